"""`--executor-opt KEY=VALUE`: typed, checked, with the fix in the message."""

from __future__ import annotations

import pytest

from mixcraft.build.executors import ExecutorOptions, parse_executor_opts
from mixcraft.errors import UserError


def test_slurm_options_are_checked():
    with pytest.raises(UserError, match="needs a partition: add --executor-opt partition=NAME"):
        parse_executor_opts("slurm", [])
    with pytest.raises(UserError, match=r"'partiton=cpu'.*one of the slurm options \(partition, time"):
        parse_executor_opts("slurm", ["partiton=cpu"])
    with pytest.raises(UserError, match="cpus_per_task expects int, got 'two'"):
        parse_executor_opts("slurm", ["partition=cpu", "cpus_per_task=two"])
    with pytest.raises(UserError, match="--executor 'k8s': expected one of local, ray, slurm"):
        parse_executor_opts("k8s", [])
    assert parse_executor_opts("slurm", ["partition=cpu", "mem-per-cpu-gb=8"])["mem_per_cpu_gb"] == 8


def test_ray_options_are_typed():
    opts = parse_executor_opts("ray", ["address=auto", "cpus_per_task=2"])
    assert opts == {"address": "auto", "cpus_per_task": 2, "mem_per_cpu_gb": 2.0, "tasks_per_job": 0}


def test_local_takes_no_options():
    with pytest.raises(UserError, match="one of the local options \\(none\\)"):
        parse_executor_opts("local", ["workers=3"])


def test_ray_missing_says_what_to_install(recipe_path, tmp_path):
    import importlib.util

    if importlib.util.find_spec("ray") is not None:
        pytest.skip("ray is installed")
    from mixcraft.build.load import load_recipe
    from mixcraft.build.run import BuildOptions, build

    with pytest.raises(UserError, match=r"--executor ray needs Ray: pip install 'ray\[default\]==2.60.0'"):
        build(load_recipe(recipe_path), tmp_path / "out", BuildOptions(executor=ExecutorOptions.parse("ray", []),
                                                                       show_progress=False))
