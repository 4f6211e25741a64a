"""A fake Slurm on PATH for the tests: `sbatch` records each job's script and options and
answers like sbatch, `scontrol` names one node, `squeue` lists the jobs named in $SQUEUE_LIVE;
and an array task run as a node would run it (the executor's pickle, SLURM_* set)."""

from __future__ import annotations

import signal
import stat
from pathlib import Path

import dill

FAKE_SBATCH = """#!/bin/sh
# Record the script (last argument) and the options, answer like sbatch.
n=$(ls "$SBATCH_LOG" | wc -l)
id=$((1000 + n))
for last; do :; done
mkdir -p "$SBATCH_LOG/$id"
cp "$last" "$SBATCH_LOG/$id/script"
echo "$@" > "$SBATCH_LOG/$id/args"
echo "Submitted batch job $id"
"""
FAKE_SCONTROL = """#!/bin/sh
echo node001
"""
# Lists the jobs named in $SQUEUE_LIVE as still queued (squeue -h -o %i -j IDS prints one id a line).
FAKE_SQUEUE = """#!/bin/sh
for id in $SQUEUE_LIVE; do echo "$id"; done
"""


def fake_slurm_bin(tmp_path: Path) -> Path:
    """`tmp_path/bin` holding the fake sbatch, scontrol and squeue."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("scontrol", FAKE_SCONTROL), ("squeue", FAKE_SQUEUE)):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def run_like_a_node(pik: Path, array_ids: range, monkeypatch) -> None:
    """Array tasks `array_ids` of the job whose executor is pickled at `pik`, one after another."""
    old = signal.getsignal(signal.SIGUSR1)  # datatrove installs a requeue handler
    try:
        for i in array_ids:
            monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(i))
            monkeypatch.setenv("SLURM_NODELIST", "node001")
            with open(pik, "rb") as f:
                dill.load(f).run()
    finally:
        monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
        signal.signal(signal.SIGUSR1, old)
