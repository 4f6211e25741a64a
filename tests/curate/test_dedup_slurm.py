"""The dedup stages on `--executor slurm`, without a cluster: each stage is a job array that
depends on the one before, the build's task array depends on the last, and running the
pickled jobs the way nodes would gives the verdicts of a local run.

A fake `sbatch` on PATH records each script and its arguments and answers like the real one
(as tests/build/test_executor_slurm.py does for the build's own arrays)."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
from collections import Counter
from pathlib import Path

import dill
from dedupcorpus import copies_corpus, stages, verdicts, write_recipe

from mixcraft.build.executors import ExecutorOptions
from mixcraft.build.run import BuildOptions, submit_slurm
from mixcraft.core.outdir import OutLayout
from mixcraft.curate.dedup import dedup_stages

FAKE_SBATCH = """#!/bin/sh
n=$(ls "$SBATCH_LOG" | wc -l)
id=$((1000 + n))
for last; do :; done
mkdir -p "$SBATCH_LOG/$id"
cp "$last" "$SBATCH_LOG/$id/script"
echo "$@" > "$SBATCH_LOG/$id/args"
echo "Submitted batch job $id"
"""
FAKE_SCONTROL = "#!/bin/sh\necho node001\n"


def _fake_slurm(tmp_path: Path, monkeypatch) -> Path:
    bin_dir, log = tmp_path / "bin", tmp_path / "sbatch-log"
    bin_dir.mkdir()
    log.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SBATCH_LOG", str(log))
    return log


def _run_like_a_node(pik: Path, tasks: int, monkeypatch) -> None:
    old = signal.getsignal(signal.SIGUSR1)  # datatrove installs a requeue handler
    try:
        for i in range(tasks):
            monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(i))
            monkeypatch.setenv("SLURM_NODELIST", "node001")
            with open(pik, "rb") as f:
                dill.load(f).run()
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_dedup_stages_as_dependent_job_arrays(tmp_path, monkeypatch):
    recipe = write_recipe(tmp_path, copies_corpus())
    want = stages(recipe, tmp_path / "local")
    log = _fake_slurm(tmp_path, monkeypatch)
    out = tmp_path / "out"
    opts = BuildOptions(workers=2, executor=ExecutorOptions.parse("slurm", ["partition=cpu"]), show_progress=False)
    jobs = submit_slurm(recipe, out, opts)
    layout = OutLayout(out)

    # Each array, in submission order, with the job it waits for. datatrove submits a stats job
    # after each array, naming the same folder: the first submission per folder is the array.
    arrays = {}
    for job in sorted(log.iterdir()):
        pik = re.search(r"launch_pickled_pipeline (\S+)", (job / "script").read_text())
        if pik and Path(pik.group(1)).parent.name not in arrays:
            dep = re.search(r"--dependency=afterok:(\d+)", (job / "args").read_text())
            arrays[Path(pik.group(1)).parent.name] = (job.name, dep.group(1) if dep else None)
    plan = [name for name, _ in dedup_stages(recipe)]
    order = [*plan, "datatrove", "datatrove-finalize"]
    assert list(arrays) == order, arrays
    for before, after in zip(order, order[1:], strict=False):
        assert arrays[after][1] == arrays[before][0], (before, after, arrays)
    assert arrays["dedup_signatures"][1] is None and str(jobs.tasks) == arrays["datatrove"][0]
    assert verdicts(out) == {}  # nothing ran on the submitting node

    for name, tasks in dedup_stages(recipe):
        _run_like_a_node(layout.dedup_logs(name) / "executor.pik", tasks, monkeypatch)
    assert verdicts(out) == want
    n_tasks = sum(s.tasks for s in recipe.sources)
    _run_like_a_node(layout.logs / "executor.pik", n_tasks, monkeypatch)
    _run_like_a_node(layout.finalize_logs / "executor.pik", 1, monkeypatch)
    ledger = json.loads(layout.manifest.read_text())["ledger"]
    dropped = sum((Counter(s["docs"]["dropped"]) for s in ledger.values()), Counter())
    assert (dropped["exact_duplicate"], dropped["near_duplicate"]) == (4, 2), ledger
