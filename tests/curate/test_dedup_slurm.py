"""The dedup stages on `--executor slurm`, without a cluster: each stage is a job array that
depends on the one before, the build's task array depends on the last, and running the
pickled jobs the way nodes would gives the verdicts of a local run.

A fake `sbatch` on PATH records each script and its arguments and answers like the real one
(as tests/build/test_executor_slurm.py does for the build's own arrays)."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

from dedupcorpus import copies_corpus, stages, verdicts, write_recipe
from slurmhelp import fake_slurm_bin, run_like_a_node

from mixcraft.build.executors import ExecutorOptions
from mixcraft.build.run import BuildOptions, submit_slurm
from mixcraft.core.outdir import OutLayout
from mixcraft.curate.dedup import dedup_stages


def _fake_slurm(tmp_path: Path, monkeypatch) -> Path:
    bin_dir, log = fake_slurm_bin(tmp_path), tmp_path / "sbatch-log"
    log.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SBATCH_LOG", str(log))
    return log


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
        run_like_a_node(layout.dedup_logs(name) / "executor.pik", range(tasks), monkeypatch)
    assert verdicts(out) == want
    n_tasks = sum(s.tasks for s in recipe.sources)
    run_like_a_node(layout.logs / "executor.pik", range(n_tasks), monkeypatch)
    run_like_a_node(layout.finalize_logs / "executor.pik", range(1), monkeypatch)
    ledger = json.loads(layout.manifest.read_text())["ledger"]
    dropped = sum((Counter(s["docs"]["dropped"]) for s in ledger.values()), Counter())
    assert (dropped["exact_duplicate"], dropped["near_duplicate"]) == (4, 2), ledger
