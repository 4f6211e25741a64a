"""Passes over whole sources that must finish before the per-source tasks start.

- a reader's own pass (`Reader.prepare`, collected by `reader_stages`): a hub dataset's data
  files are resolved once; the `code_files` reader's map stage hash-partitions its rows by
  repository so that each task can group whole repositories (a `PrepareStage`: datatrove
  ranks that an executor can fan out, then a finish on the driver);
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep

from mixcraft.build.executors import ExecutorOptions, make_executor
from mixcraft.build.plan import task_doc_cap, unit_order_seed
from mixcraft.build.progress import QUIET, Reporter
from mixcraft.core.ledger import Ledger
from mixcraft.core.outdir import OutLayout, write_atomic
from mixcraft.core.recipe import Recipe, Source
from mixcraft.curate.dedup import dedup_inputs, dedup_job, dedup_pipeline
from mixcraft.curate.dedup_files import BUDGET_BYTES
from mixcraft.curate.minhash import warm_tokenizer
from mixcraft.readers import make_reader
from mixcraft.readers.base import PrepareStage


def prepare_sources(recipe: Recipe, out: Path, *, limit: int | None, strict: bool,
                    executor: ExecutorOptions = ExecutorOptions(), workers: int | None = None,
                    report: Reporter = QUIET) -> list | None:
    """The passes before the tasks: each reader's fan-out stage on the build's executor (its ranks
    at once, `workers` at a time; finished ranks are skipped on a re-run), then dedup's stages.
    On Slurm nothing runs here: every stage comes back unsubmitted, as executors each depending on
    the one before (a reader stage's array, then its finish as a one-task job; then dedup's
    stages); the build's task array must depend on the last. Elsewhere: None."""
    layout = OutLayout(out)
    chain: list = []  # Slurm: every stage's executor, each depending on the one before
    for stage in reader_stages(recipe, layout, strict=strict):
        logs = layout.work / "datatrove-prepare" / stage.name
        chain.append(make_executor(executor, [stage.step], tasks=stage.world_size, workers=workers, logging_dir=logs,
                                   name=f"{recipe.name}-{stage.name}", depends=chain[-1] if chain else None))
        if executor.kind != "slurm":
            with report.stage(stage.name, f"{stage.world_size:,} tasks"):
                chain.pop().run()
                stage.finish()
            continue
        chain.append(make_executor(executor, [FinishStep(stage.finish)], tasks=1, workers=1,
                                   logging_dir=logs / "finish", name=f"{recipe.name}-{stage.name}-finish",
                                   depends=chain[-1]))
    if recipe.dedup:
        chain += run_dedup(recipe, layout, limit=limit, executor=executor, workers=workers,
                           after=chain[-1] if chain else None, report=report) or []
    return chain if executor.kind == "slurm" else None


class FinishStep(PipelineStep):
    """A reader stage's driver-side finish as a one-task job (Slurm runs it after the stage's array)."""

    name = "finish"
    type = "mixcraft"

    def __init__(self, finish: Callable[[], None]):
        super().__init__()
        self.finish = finish

    def run(self, data: Iterator | None = None, rank: int = 0, world_size: int = 1) -> Iterator:
        self.finish()
        yield from ()


def reader_stages(recipe: Recipe, layout: OutLayout, *, strict: bool) -> list[PrepareStage]:
    """Each reader's driver-side preparation (a hub dataset's data files resolved once), and the
    fan-out passes that must run before the tasks (`code_files`' map stage: `stage.world_size`
    ranks of `stage.step`, then `stage.finish()`); a pass that already finished is left out."""
    stages = []
    for source in recipe.sources:
        folder = layout.prepare(source.name)
        reader = make_reader(source.name, source.reader, Ledger(source.name, strict=strict), work_dir=folder)
        stage = reader.prepare(folder, source.tasks)
        if stage is not None:
            stages.append(stage)
    return stages


@dataclass(frozen=True)
class TaskStream:
    """A build task's documents as its read step yields them in pass 1 (`curate.dedup.DocStream`)."""

    spec: Source
    task: int
    cap: int | None  # the task's --limit / max_docs share
    work_dir: Path
    order_seed: int | None  # the task's unit order (build/plan.py: unit_order_seed), as its read step uses

    @property
    def source(self) -> str:
        return self.spec.name

    def __call__(self) -> Iterator[Document]:
        # A scratch ledger: the build task itself counts every read and skip for real.
        reader = make_reader(self.spec.name, self.spec.reader, Ledger(self.spec.name), work_dir=self.work_dir,
                             order_seed=self.order_seed)
        return islice(reader.read(self.task, self.spec.tasks), self.cap)


def run_dedup(recipe: Recipe, layout: OutLayout, *, limit: int | None, executor: ExecutorOptions = ExecutorOptions(),
              workers: int | None = None, budget_bytes: int = BUDGET_BYTES, after=None,
              report: Reporter = QUIET) -> list | None:
    """The dedup stages (curate/dedup.py), each a fan-out of tasks on the executor, resumed
    task by task after a kill. Local and Ray: runs them, leaves the verdicts, deletes the
    scratch files, returns None. Slurm: submits nothing yet and returns the stages' executors,
    each depending on the one before (the build's task array must depend on the last)."""
    folder, identity = layout.dedup_dir, {"recipe_sha256": recipe.digest(), "limit": limit}
    done, started = folder / "done.json", folder / "started.json"
    if _holds(done, identity):
        return None
    if not _holds(started, identity):  # another recipe or --limit: nothing here is reusable
        shutil.rmtree(folder, ignore_errors=True)
        write_atomic(started, json.dumps(identity))
    inputs = dedup_inputs(recipe)
    streams = [TaskStream(s, t, task_doc_cap(s, t, limit), layout.prepare(s.name), unit_order_seed(recipe, s))
               for s, t in inputs]
    job = dedup_job(recipe, streams, [layout.verdicts(s.name, t) for s, t in inputs], layout.dedup_work,
                    layout.dedup_logs("task_stats"), budget_bytes=budget_bytes)
    if recipe.dedup.minhash and executor.kind == "local":
        warm_tokenizer()  # once here, not in every forked task (~2 s each)
    executors = []
    for name, step, tasks in dedup_pipeline(job):
        executors.append(make_executor(executor, [step], tasks=tasks, workers=workers,
                                       logging_dir=layout.dedup_logs(name), name=f"{recipe.name}-{name}",
                                       depends=executors[-1] if executors else after))
        if executor.kind != "slurm":
            with report.stage(name, f"{tasks:,} tasks"):
                executors[-1].run()
    if executor.kind == "slurm":
        return executors
    write_atomic(done, json.dumps(identity))
    shutil.rmtree(layout.dedup_work, ignore_errors=True)  # ~2 KB per document, no longer needed
    return None


def _holds(path: Path, identity: dict) -> bool:
    return path.is_file() and json.loads(path.read_text()) == identity
