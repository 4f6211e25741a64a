"""`--executor ray` on a multi-node Ray cluster: a head and two worker nodes, each a separate
`ray start` process with its own `--num-cpus`. The build, run as a user runs it (a `mixcraft`
process joining the cluster by address, with the default `--workers`), must give the reference
bytes and run more than one task at a time; each node has one CPU and each task reserves one,
so two tasks at once are on two nodes. Needs Ray (`pip install
'mixcraft[ray]'`); skipped without it."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from buildhelp import REPO_ROOT, cli_env, output_hashes

from mixcraft.core.outdir import OutLayout

pytest.importorskip("ray")
RAY = Path(sys.executable).parent / "ray"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path):
    """Head (1 CPU) + 2 worker nodes (1 CPU each) on 127.0.0.1; stopped afterwards."""
    # A private test cluster on loopback: no token auth (Ray 2.60 otherwise wants a shared token file).
    env = cli_env() | {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO_ROOT)}
    port = _free_port()
    temp = Path("/tmp") / f"ray-mixcraft-{os.getpid()}"  # short: Ray's socket paths must fit 107 bytes
    common = ["--disable-usage-stats", "--include-dashboard=false"]
    subprocess.run([str(RAY), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                    f"--temp-dir={temp}", *common], env=env, check=True, capture_output=True, timeout=180)
    address = f"127.0.0.1:{port}"
    try:
        for _ in range(2):
            subprocess.run([str(RAY), "start", f"--address={address}", "--node-ip-address=127.0.0.1",
                            "--num-cpus=1", "--disable-usage-stats"], env=env, check=True, capture_output=True,
                           timeout=180)
        yield address, env
    finally:
        subprocess.run([str(RAY), "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def _task_spans(out: Path) -> list[tuple[datetime, datetime]]:
    """(start, end) of each build task, from datatrove's task logs."""
    spans = []
    for log in sorted((OutLayout(out).logs / "logs").glob("task_*.log")):
        stamps = re.findall(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)", log.read_text())
        spans.append((datetime.fromisoformat(stamps[0]), datetime.fromisoformat(stamps[-1])))
    return spans


def test_a_build_on_a_three_node_cluster_matches_the_local_build(cluster, reference, recipe_path, tmp_path):
    address, env = cluster
    _, want = reference
    out = tmp_path / "ray"
    proc = subprocess.run([sys.executable, "-m", "mixcraft", "build", str(recipe_path), "--out", str(out),
                           "--executor", "ray", "--executor-opt", f"address={address}",
                           "--executor-opt", "mem_per_cpu_gb=0.5", "--executor-opt", "tasks_per_job=1"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert output_hashes(out) == want
    spans = _task_spans(out)
    assert len(spans) >= 9, "every build task left its log"
    overlapping = sum(1 for i, (a0, a1) in enumerate(spans) for b0, b1 in spans[i + 1:] if a0 < b1 and b0 < a1)
    assert overlapping > 0, f"no two tasks ran at once: {spans}"
