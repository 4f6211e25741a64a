"""`--executor ray`: the same build on a local Ray instance started by the test gives the
reference bytes. Needs Ray (`pip install 'ray[default]==2.60.0'`); skipped without it."""

from __future__ import annotations

import pytest
from buildhelp import REPO_ROOT, output_hashes

from mixcraft.build.executors import ExecutorOptions
from mixcraft.build.load import load_recipe
from mixcraft.build.run import BuildOptions, build

ray = pytest.importorskip("ray")


@pytest.mark.slow  # about 140 s on 2 cores; the multi-node Ray test replaces it
def test_ray_build_matches_the_local_build(reference, recipe_path, tmp_path):
    _, want = reference
    out = tmp_path / "ray"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)}})
    try:
        build(load_recipe(recipe_path), out, BuildOptions(
            workers=2, executor=ExecutorOptions.parse("ray", ["mem_per_cpu_gb=1"]), show_progress=False))
    finally:
        ray.shutdown()
    assert output_hashes(out) == want
