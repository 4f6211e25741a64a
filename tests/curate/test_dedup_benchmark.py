"""benchmarks/dedup.py runs end to end on a tiny recipe and prints its verdict lines."""

from __future__ import annotations

import subprocess
import sys

import pytest
from dedupcorpus import REPO, copies_corpus, write_recipe


@pytest.mark.slow  # fresh processes for 3 contenders and the doubling runs: about 30 s here
def test_benchmark_runs_and_compares(tmp_path):
    recipe = write_recipe(tmp_path, copies_corpus())
    proc = subprocess.run([sys.executable, "benchmarks/dedup.py", "--recipe", str(recipe.path), "--rounds", "1",
                           "--tasks", "2"], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "6 documents dropped by either, 0 dropped by one only (kept sets EQUAL), 0 verdicts" in proc.stdout
    assert "wrote the same verdicts: True" in proc.stdout and "per worker, stages / peer:" in proc.stdout
