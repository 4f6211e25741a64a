"""The build: the one place that knows stage order.

    lock OUT -> [prepare: group repository files (code_files), find duplicates across sources]
      -> tasks on an executor, each:  read -> drop duplicates -> curriculum stage -> filter (text)
             -> tokenize -> filter (tokens) -> sample (repeat, long-text knobs)
             -> route to length bucket and pack -> write MDS
      -> finalize: merge the parts' indexes, the ledgers into manifest.json (+ the pre-mixed stream)

Each source is split into `tasks` datatrove tasks (build/plan.py); they run on a datatrove
executor (build/executors.py), and each writes its own MDS part per bucket and its own result
(build/task.py, build/steps.py). Because the task split comes from the recipe, not from
`--workers`, the shards are the same whatever the worker count. A task killed midway leaves
no completion marker, so a re-run redoes exactly that task from scratch (datatrove's
`skip_completed`); its workers die with it, and merging is idempotent, so a build killed at any
point and re-run ends with the same bytes as one never interrupted. A curriculum builds each
stage as a complete output of its own in OUT/<stage>/.
"""

from __future__ import annotations

import errno
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from datatrove.pipeline.base import PipelineStep

from mixcraft import __version__
from mixcraft.build.executors import ExecutorOptions, make_executor
from mixcraft.build.finalize import finalize
from mixcraft.build.load import check_inputs, write_resolved
from mixcraft.build.plan import plan_tasks
from mixcraft.build.prepare import prepare_sources
from mixcraft.build.progress import QUIET, Plan, Reporter, run_with_progress
from mixcraft.build.slurm import record_jobs, refuse_if_queued
from mixcraft.build.task import TaskStep
from mixcraft.core.manifest import Curriculum, CurriculumStage, Manifest, RecipeRef, write_curriculum
from mixcraft.core.mixture import source_budget
from mixcraft.core.outdir import WORK_DIR, OutLayout, lock_folder, write_atomic
from mixcraft.core.recipe import Recipe
from mixcraft.core.tokenize import load_tokenizer
from mixcraft.errors import UserError


@dataclass(frozen=True)
class BuildOptions:
    """How to run a build; none of it changes the output."""

    workers: int | None = None  # tasks at once; None: every local CPU, the Ray cluster's CPUs, no Slurm limit
    limit: int | None = None  # documents per source (a trial build); part of the build's identity
    strict: bool = False
    executor: ExecutorOptions = ExecutorOptions()
    show_progress: bool = True  # stage lines, and bars (terminal) or dated progress lines (pipe, log)
    progress_every_s: float = 30.0  # off a terminal, a progress line this often


class FinalizeStep(PipelineStep):
    """`finalize` as a datatrove step: the Slurm job that runs after every build task."""

    name = "mixcraft finalize"
    type = "mixcraft"

    def __init__(self, recipe: Recipe, out: Path):
        super().__init__()
        self.recipe, self.out = recipe, out

    def run(self, data: Iterator | None = None, rank: int = 0, world_size: int = 1) -> Iterator:
        with self.track_time():
            finalize(self.recipe, self.out)
        yield from ()


def task_executor(recipe: Recipe, out: Path, opts: BuildOptions, depends=None):
    step = TaskStep(recipe, out, limit=opts.limit, strict=opts.strict)
    return make_executor(opts.executor, [step], tasks=len(plan_tasks(recipe)), workers=opts.workers,
                         logging_dir=OutLayout(out).logs, name=recipe.name, depends=depends)


def check_out(recipe: Recipe, out: Path, *, limit: int | None) -> dict:
    """Refuse to mix two different builds in one folder; returns this build's identity."""
    stamp = OutLayout(out).stamp
    identity = {"recipe_sha256": recipe.digest(), "limit": limit, "mixcraft": __version__}
    if stamp.is_file():
        before = json.loads(stamp.read_text())
        if before != identity:
            raise UserError(f"{out}: holds a build of a different recipe or --limit ({before['recipe_sha256'][:12]}"
                            f", limit {before['limit']}); choose another --out or delete the folder")
    elif out.is_dir() and any(p for p in out.iterdir() if not _bare_work_dir(p)):
        raise UserError(f"{out}: folder is not empty and holds no mixcraft build; choose another --out")
    return identity


def _bare_work_dir(p: Path) -> bool:
    """The work folder holding at most the lock: what a build killed before its stamp leaves."""
    return p.name == WORK_DIR and p.is_dir() and all(c.name == "lock" for c in p.iterdir())


@contextmanager
def locked_out(recipe: Recipe, out: Path, *, limit: int | None) -> Iterator[None]:
    """Lock OUT and stamp it (identity, resolved recipe) for the length of a `with` block."""
    check_out(recipe, out, limit=limit)  # before a lock file lands in someone else's folder
    out.mkdir(parents=True, exist_ok=True)
    with lock_folder(out):
        identity = check_out(recipe, out, limit=limit)
        write_atomic(OutLayout(out).stamp, json.dumps(identity))
        write_resolved(recipe, OutLayout(out).resolved_recipe)
        yield


@contextmanager
def disk_full_is_one_line(out: Path) -> Iterator[None]:
    """No space left on the device: one line with the folder and what is free, not a traceback.
    Nothing half-written counts as done (parts are rewritten, results written atomically), so
    the same command resumes once there is room."""
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        where = Path(exc.filename) if exc.filename else out
        usage = shutil.disk_usage(out if out.exists() else out.parent)
        raise UserError(f"{where}: no space left on device ({usage.free / 2**20:,.1f} MiB free of "
                        f"{usage.total / 2**20:,.1f} MiB); free space, then re-run the same command to resume") \
            from None


def build(recipe: Recipe, out: Path, opts: BuildOptions = BuildOptions()) -> Manifest:
    """Run every task (skipping those a previous run finished), then merge. For Slurm, see
    `submit_slurm`."""
    with disk_full_is_one_line(out):
        return _build(recipe, out, opts)


def _build(recipe: Recipe, out: Path, opts: BuildOptions) -> Manifest:
    check_inputs(recipe)
    # Before OUT is touched: a missing Ray must not leave a half-made folder behind.
    ex = task_executor(recipe, out, opts)
    report = Reporter(every_s=opts.progress_every_s) if opts.show_progress else QUIET
    plan = Plan(budgets={s.name: source_budget(recipe, s) for s in recipe.sources},
                tasks={s.name: s.tasks for s in recipe.sources})
    with locked_out(recipe, out, limit=opts.limit):
        with report.stage("prepare", "tokenizer, repository grouping, dedup"):
            prewarm(recipe)
            prepare_sources(recipe, out, limit=opts.limit, strict=opts.strict, executor=opts.executor,
                            workers=opts.workers, report=report)
        with report.stage("tasks", f"{sum(plan.tasks.values())} tasks, {ex.workers} at once"):
            run_with_progress(ex.run, plan, OutLayout(out).progress_dir, report)
        with report.stage("finalize", "merge indexes, write manifest.json"):
            return finalize(recipe, out)


def build_curriculum(recipe: Recipe, out: Path, opts: BuildOptions = BuildOptions()) -> list[Manifest]:
    """Build every stage into OUT/<stage>/ and write OUT/curriculum.json; returns the manifests."""
    if OutLayout(out).manifest.is_file():
        raise UserError(f"{out}: holds a single-stage build; a curriculum needs its own --out folder")
    manifests = [build(r, out / r.stage.name, opts) for r in recipe.stage_recipes]
    stages = [CurriculumStage(name=r.stage.name, path=r.stage.name, seq_len=r.seq_len, share=r.stage.share,
                              target_tokens=r.total_tokens, tokens=m.packed_tokens(),
                              rows=sum(s.rows for s in m.streams))
              for r, m in zip(recipe.stage_recipes, manifests, strict=True)]
    write_curriculum(out, Curriculum(recipe=RecipeRef(name=recipe.name, path=recipe.path, sha256=recipe.digest()),
                                     total_tokens=recipe.total_tokens, stages=stages))
    return manifests


@dataclass(frozen=True)
class SlurmJobs:
    tasks: int | str  # job id of the task array (sbatch's text); -1 when every task had finished
    finalize: int | str  # job id of the finalize job; -1 when the build was complete
    script: Path


def submit_slurm(recipe: Recipe, out: Path, opts: BuildOptions) -> SlurmJobs:
    """Submit the build as a Slurm job array, and `finalize` as a job that starts when every
    array task has succeeded. Re-running submits only unfinished tasks."""
    check_inputs(recipe)
    layout = OutLayout(out)
    with locked_out(recipe, out, limit=opts.limit):
        refuse_if_queued(layout.slurm_jobs)
        # Every stage a job (array) depending on the one before: reader passes, dedup, the tasks, finalize.
        chain = prepare_sources(recipe, out, limit=opts.limit, strict=opts.strict, executor=opts.executor,
                                workers=opts.workers) or []
        ex = task_executor(recipe, out, opts, depends=chain[-1] if chain else None)
        fin = make_executor(opts.executor, [FinalizeStep(recipe, out)], tasks=1, workers=1,
                            logging_dir=layout.finalize_logs, name=f"{recipe.name}-finalize", depends=ex)
        fin.run()  # launches `ex` first, then itself with --dependency=afterok:<ex's job id>
        record_jobs(layout.slurm_jobs, [*(d.job_id for d in chain), ex.job_id, fin.job_id])
        return SlurmJobs(tasks=ex.job_id, finalize=fin.job_id, script=layout.logs / "launch_script.slurm")


def prewarm(recipe: Recipe) -> None:
    """Load the tokenizer and build its encoder once here, so forked local workers inherit both."""
    load_tokenizer(recipe.tokenizer).encode("warm up")
