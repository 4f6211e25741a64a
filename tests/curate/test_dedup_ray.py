"""The dedup stages on `--executor ray` (a local Ray instance started by the test) write the
verdicts of a local run. Needs Ray; skipped without it."""

from __future__ import annotations

import pytest
from dedupcorpus import REPO, copies_corpus, stages, write_recipe

from mixcraft.build.executors import ExecutorOptions

ray = pytest.importorskip("ray")


@pytest.mark.slow  # Ray's start-up dominates: 72 s on 2 cores
def test_ray_stages_write_the_local_verdicts(tmp_path):
    recipe = write_recipe(tmp_path, copies_corpus())
    want = stages(recipe, tmp_path / "local")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    try:
        found = stages(recipe, tmp_path / "ray", workers=2,
                       executor=ExecutorOptions.parse("ray", ["mem_per_cpu_gb=1"]))
    finally:
        ray.shutdown()
    assert found == want and any(want.values())
