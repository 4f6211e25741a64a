"""`--executor-opt KEY=VALUE`: typed, checked, with the fix in the message."""

from __future__ import annotations

import pytest

from mixcraft.errors import UserError
from mixcraft.executors import parse_executor_opts


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
    assert opts == {"address": "auto", "cpus_per_task": 2, "mem_per_cpu_gb": 2.0}
