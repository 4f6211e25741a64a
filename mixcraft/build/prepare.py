"""Passes over whole sources that must finish before the per-source tasks start.

- a reader's own pass (`Reader.prepare`): the `code_files` reader hash-partitions its rows by
  repository so that each task can group whole repositories;
- cross-source dedup (`curate/dedup.py`), when the recipe has a `dedup:` block: stages of
  tasks on the build's executor (signatures, exact partitions, MinHash bands, verdicts); each
  later copy of a text gets a verdict naming the original; tasks drop them by position.

They run in this order. The reader passes run in the build's own process and are skipped on a
re-run when their `done.json` matches; the dedup stages resume task by task (datatrove's
completion markers). Their results live under OUT/.mixcraft.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from datatrove.data import Document

from mixcraft.build.executors import ExecutorOptions, make_executor
from mixcraft.build.plan import task_doc_cap
from mixcraft.core.ledger import Ledger
from mixcraft.core.outdir import OutLayout, write_atomic
from mixcraft.core.recipe import Recipe, Source
from mixcraft.curate.dedup import dedup_inputs, dedup_job, dedup_pipeline
from mixcraft.curate.dedup_files import BUDGET_BYTES
from mixcraft.curate.minhash import warm_tokenizer
from mixcraft.readers import make_reader


def prepare_sources(recipe: Recipe, out: Path, *, limit: int | None, strict: bool,
                    executor: ExecutorOptions = ExecutorOptions(), workers: int = 1):
    """Returns, on Slurm, the dedup stages' last executor (the build tasks must depend on it)."""
    layout = OutLayout(out)
    for source in recipe.sources:
        folder = layout.prepare(source.name)
        reader = make_reader(source.name, source.reader, Ledger(source.name, strict=strict), work_dir=folder)
        reader.prepare(folder, source.tasks)
    if recipe.dedup:
        return run_dedup(recipe, layout, limit=limit, executor=executor, workers=workers)
    return None


@dataclass(frozen=True)
class TaskStream:
    """A build task's documents as its read step yields them in pass 1 (`curate.dedup.DocStream`)."""

    spec: Source
    task: int
    cap: int | None  # the task's --limit / max_docs share
    work_dir: Path

    @property
    def source(self) -> str:
        return self.spec.name

    def __call__(self) -> Iterator[Document]:
        # A scratch ledger: the build task itself counts every read and skip for real.
        reader = make_reader(self.spec.name, self.spec.reader, Ledger(self.spec.name), work_dir=self.work_dir)
        return islice(reader.read(self.task, self.spec.tasks), self.cap)


def run_dedup(recipe: Recipe, layout: OutLayout, *, limit: int | None, executor: ExecutorOptions = ExecutorOptions(),
              workers: int = 1, budget_bytes: int = BUDGET_BYTES):
    """The dedup stages (curate/dedup.py), each a fan-out of tasks on the executor, resumed
    task by task after a kill. Local and Ray: runs them, leaves the verdicts, deletes the
    scratch files, returns None. Slurm: submits nothing yet and returns the last stage's
    executor, each stage depending on the one before; the build's task array depends on it."""
    folder, identity = layout.dedup_dir, {"recipe_sha256": recipe.digest(), "limit": limit}
    done, started = folder / "done.json", folder / "started.json"
    if _holds(done, identity):
        return None
    if not _holds(started, identity):  # another recipe or --limit: nothing here is reusable
        shutil.rmtree(folder, ignore_errors=True)
        write_atomic(started, json.dumps(identity))
    inputs = dedup_inputs(recipe)
    streams = [TaskStream(s, t, task_doc_cap(s, t, limit), layout.prepare(s.name)) for s, t in inputs]
    job = dedup_job(recipe, streams, [layout.verdicts(s.name, t) for s, t in inputs], layout.dedup_work,
                    layout.dedup_logs("task_stats"), budget_bytes=budget_bytes)
    if recipe.dedup.minhash and executor.kind == "local":
        warm_tokenizer()  # once here, not in every forked task (~2 s each)
    previous = None
    for name, step, tasks in dedup_pipeline(job):
        previous = make_executor(executor, [step], tasks=tasks, workers=workers, logging_dir=layout.dedup_logs(name),
                                 name=f"{recipe.name}-{name}", depends=previous)
        if executor.kind != "slurm":
            previous.run()
    if executor.kind == "slurm":
        return previous
    write_atomic(done, json.dumps(identity))
    shutil.rmtree(layout.dedup_work, ignore_errors=True)  # ~2 KB per document, no longer needed
    return None


def _holds(path: Path, identity: dict) -> bool:
    return path.is_file() and json.loads(path.read_text()) == identity
