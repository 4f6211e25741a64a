"""The build: the one place that knows stage order.

    [prepare: group repository files, find duplicates across sources]
    read -> drop duplicates -> sample (repeat, long-text knobs, curriculum stage) -> filter (text)
         -> tokenize -> filter (tokens) -> route to length bucket -> pack -> write MDS

Each source is split into `tasks` datatrove tasks (a task reads every `tasks`-th input unit).
Tasks run on a datatrove executor; each writes its own MDS part per bucket and its own ledger.
When all are done, the parts are merged into one index per (source, bucket) and the ledgers
into `manifest.json`. Because the task split comes from the recipe, not from `--workers`, the
shards are the same whatever the worker count. A task killed midway leaves no completion
marker, so a re-run redoes exactly that task from scratch (datatrove's `skip_completed`);
its workers die with it (mixcraft/build/executors.py), and merging is idempotent, so a build killed at
any point and re-run ends with the same bytes as one never interrupted.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datatrove.pipeline.base import PipelineStep

from mixcraft import __version__
from mixcraft.curate.dedup import drop_duplicates, load_verdicts
from mixcraft.curate.filters import build_filters
from mixcraft.errors import UserError
from mixcraft.build.executors import make_executor as make_datatrove_executor
from mixcraft.build.executors import parse_executor_opts
from mixcraft.core.ledger import Ledger, merge_ledgers
from mixcraft.core.lengths import LengthHistogram, merge_bucket_stats, track_lengths
from mixcraft.mds import SubsetWriter, merge_subset, shard_files
from mixcraft.core.mixture import Sampler, bucket_budgets, doc_cap, keep_stage, summarize_source
from mixcraft.core.outdir import lock_folder, write_atomic
from mixcraft.core.pack import subset_has_mask
from mixcraft.build.prepare import prepare_dir, prepare_sources
from mixcraft.readers import make_reader
from mixcraft.recipe import Recipe, write_resolved
from mixcraft.build.steps import (
    BucketSink,
    Progress,
    filter_text,
    filter_tokens,
    route_and_pack,
    take_docs,
    tokenize_docs,
)
from mixcraft.core.tokenize import load_tokenizer

WORK_DIR = ".mixcraft"


@dataclass(frozen=True)
class TaskSpec:
    source: str
    task: int
    n_tasks: int


def plan_tasks(recipe: Recipe) -> list[TaskSpec]:
    return [TaskSpec(s.name, t, s.tasks) for s in recipe.sources for t in range(s.tasks)]


def split_limit(limit: int | None, task: int, n_tasks: int) -> int | None:
    """`--limit N` documents per source, shared out over its tasks."""
    if limit is None:
        return None
    return limit // n_tasks + (1 if task < limit % n_tasks else 0)


def run_task(recipe: Recipe, spec: TaskSpec, out: Path, *, limit: int | None, strict: bool) -> None:
    """One task of one source, start to finish."""
    source = recipe.source(spec.source)
    work = out / WORK_DIR
    ledger = Ledger(source.name, strict=strict)
    if recipe.output.write_dropped:
        ledger.write_dropped_to(work / "dropped" / source.name / f"{spec.task:05d}.jsonl")
    tok = load_tokenizer(recipe.tokenizer)
    reader = make_reader(source.name, source.reader, ledger, work_dir=prepare_dir(work, source.name))
    units = reader.task_units(spec.task, spec.n_tasks)
    progress = Progress(work / "progress" / f"{source.name}.{spec.task:05d}.json", source.name,
                        sum(u.size_bytes for u in units))
    chat = source.reader["type"] == "chat"
    pad_id = pad_token_id(tok)
    # Tasks past the last unit get nothing to read; the budget is shared by those that do.
    budgets = bucket_budgets(recipe, source, reader.active_tasks(spec.n_tasks))
    sinks = [
        BucketSink(b, recipe.seq_len, ledger,
                   SubsetWriter(out / source.name / b.name / f"{spec.task:05d}", domain=source.name,
                                with_mask=subset_has_mask(source.packing, b.min_tokens, chat),
                                compression=recipe.output.compression,
                                size_limit=recipe.output.shard_size_bytes),
                   budgets[b.name], packing=source.packing, pad_id=pad_id)
        for b in source.buckets
    ]
    filters = build_filters(source.filters, work_dir=work)
    max_docs = split_limit(doc_cap(limit, source.max_docs), spec.task, spec.n_tasks)
    verdicts = load_verdicts(work, source.name, spec.task)

    def tokenized(led: Ledger):
        """read -> dedup -> filter -> tokenize -> filter, counting in `led` (one pass over the input)."""
        rdr = reader if led is ledger else make_reader(source.name, source.reader, led,
                                                       work_dir=prepare_dir(work, source.name))
        docs = rdr.read(spec.task, spec.n_tasks)
        docs = take_docs(docs, max_docs)
        docs = drop_duplicates(docs, verdicts, led)
        docs = progress.track_text(docs)
        docs = keep_stage(docs, recipe, source, led)
        docs = filter_text(docs, filters, led)
        tdocs = tokenize_docs(docs, tok, led, add_bos=recipe.add_bos, add_eos=recipe.add_eos)
        return filter_tokens(tdocs, filters, led)

    sampler, seen = Sampler(source, recipe.seed, ledger), LengthHistogram()
    tdocs = sampler.run(tokenized)  # repeat / downsample / long-text knobs (mixcraft/core/mixture.py)
    tdocs = track_lengths(progress.track_tokens(tdocs), seen)
    for _ in route_and_pack(tdocs, sinks, ledger):
        pass

    buckets = {s.bucket.name: s.finish() for s in sinks}
    ledger.close()
    result = {"ledger": ledger.to_dict(), "buckets": buckets, "mixture": sampler.to_dict(),
              "seen_lengths": seen.to_dict()}
    path = work / "tasks" / source.name / f"{spec.task:05d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)
    progress.save(done=True)


def pad_token_id(tok) -> int:
    """What best-fit padding is made of: the end-of-text token (Llama-3: 128001), else 0. The
    padding span has mask 0, so the id never reaches the loss; it only has to be a valid token."""
    return tok.eos_id if tok.eos_id is not None else 0


class BuildStep(PipelineStep):
    """A datatrove pipeline step running mixcraft task number `rank` of the build plan."""

    name = "mixcraft build"
    type = "mixcraft"

    def __init__(self, recipe: Recipe, out: Path, *, limit: int | None, strict: bool):
        super().__init__()
        self.recipe, self.out, self.limit, self.strict = recipe, out, limit, strict

    def run(self, data: Any = None, rank: int = 0, world_size: int = 1):
        spec = plan_tasks(self.recipe)[rank]
        with self.track_time():
            run_task(self.recipe, spec, self.out, limit=self.limit, strict=self.strict)
        yield from ()


class FinalizeStep(PipelineStep):
    """`finalize` as a datatrove step: the Slurm job that runs after every build task."""

    name = "mixcraft finalize"
    type = "mixcraft"

    def __init__(self, recipe: Recipe, out: Path):
        super().__init__()
        self.recipe, self.out = recipe, out

    def run(self, data: Any = None, rank: int = 0, world_size: int = 1):
        with self.track_time():
            finalize(self.recipe, self.out)
        yield from ()


def make_executor(recipe: Recipe, out: Path, *, workers: int, limit: int | None, strict: bool,
                  executor: str = "local", options: dict | None = None):
    plan = plan_tasks(recipe)
    step = BuildStep(recipe, out, limit=limit, strict=strict)
    return make_datatrove_executor(executor, [step], tasks=len(plan), workers=workers,
                                   logging_dir=out / WORK_DIR / "datatrove", opts=options, name=recipe.name)


def check_out(recipe: Recipe, out: Path, *, limit: int | None) -> dict:
    """Refuse to mix two different builds in one folder; returns this build's identity."""
    stamp = out / WORK_DIR / "build.json"
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


def prepare_out(recipe: Recipe, out: Path, *, limit: int | None) -> None:
    """Create OUT with this build's stamp and resolved recipe."""
    identity = check_out(recipe, out, limit=limit)
    stamp = out / WORK_DIR / "build.json"
    stamp.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(stamp, json.dumps(identity))
    write_resolved(recipe, out / "recipe.resolved.yaml")


def missing_tasks(recipe: Recipe, out: Path) -> list[str]:
    """Tasks of the plan without a result file, as 'source/task'."""
    return [f"{s.source}/{s.task:05d}" for s in plan_tasks(recipe)
            if not (out / WORK_DIR / "tasks" / s.source / f"{s.task:05d}.json").is_file()]


def finalize(recipe: Recipe, out: Path) -> dict:
    """Merge per-task indexes and ledgers into the subsets' index.json and manifest.json."""
    if missing := missing_tasks(recipe, out):
        raise UserError(f"{out}: {len(missing)} task(s) did not finish ({', '.join(missing[:5])}); their logs are "
                        f"in {out / WORK_DIR / 'datatrove' / 'logs'}; re-run the same command to resume")
    tok = load_tokenizer(recipe.tokenizer)
    streams, ledgers, shards, sources = [], {}, {}, {}
    for source in recipe.sources:
        parts = [json.loads((out / WORK_DIR / "tasks" / source.name / f"{t:05d}.json").read_text())
                 for t in range(source.tasks)]
        ledgers[source.name] = merge_ledgers([p["ledger"] for p in parts])
        sources[source.name] = summarize_source(recipe, source, parts)
        src_tokens = sum(p["buckets"][b.name]["tokens"] for p in parts for b in source.buckets)
        for b in source.buckets:
            subset = out / source.name / b.name
            merge_subset(subset)
            rel = f"{source.name}/{b.name}"
            shards[rel] = shard_files(subset)
            totals = {k: sum(p["buckets"][b.name][k] for p in parts)
                      for k in ("rows", "tokens", "pieces", "docs", "split", "tail_tokens", "padding")}
            if b.proportion is not None:
                proportion = b.proportion
            else:  # buckets of one source share its proportion by the tokens each received
                proportion = source.proportion * (totals["tokens"] / src_tokens if src_tokens else 1 / len(source.buckets))
            target = recipe.total_tokens * proportion if recipe.total_tokens else None
            streams.append({"source": source.name, "bucket": b.name, "path": rel, "proportion": proportion,
                            "target_proportion": b.proportion if b.proportion is not None else source.proportion,
                            "target_tokens": target, "domain": source.name,
                            "mask": subset_has_mask(source.packing, b.min_tokens, source.reader["type"] == "chat"),
                            "packing": source.packing, **totals,
                            **merge_bucket_stats([p["buckets"][b.name] for p in parts])})
    manifest = {
        "mixcraft_version": __version__,
        "recipe": {"name": recipe.name, "path": recipe.path, "sha256": recipe.digest()},
        "tokenizer": tok.describe(),
        "seed": recipe.seed,
        "seq_len": recipe.seq_len,
        "total_tokens": recipe.total_tokens,
        "streams": streams,
        # ProLong's trainer takes `--tokenized_mds_train OUT/<path>@<proportion>` (training/dataset.py)
        "prolong_streams": [f"{s['path']}@{s['proportion']:.6g}" for s in streams],
        "ledger": ledgers,
        "sources": sources,
        "shards": shards,
    }
    write_atomic(out / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    if recipe.output.premix:
        from mixcraft.build.premix import write_premix

        manifest = write_premix(recipe, out, manifest)
    return manifest


def build(recipe: Recipe, out: Path, *, workers: int = 1, limit: int | None = None, strict: bool = False,
          executor: str = "local", options: dict | None = None, show_progress: bool = True) -> dict:
    """Run every task (skipping those a previous run finished), then merge. For `slurm`, see
    `submit_slurm`."""
    options = options if options is not None else parse_executor_opts(executor, [])
    # Before OUT is touched: a missing Ray must not leave a half-made folder behind.
    ex = make_executor(recipe, out, workers=workers, limit=limit, strict=strict, executor=executor,
                       options=options)
    with lock_out_ready(recipe, out, limit=limit):
        prewarm(recipe)
        prepare_sources(recipe, out / WORK_DIR, limit=limit, strict=strict)
        if show_progress and sys.stderr.isatty():
            from mixcraft.build.progress import run_with_progress

            run_with_progress(ex, recipe, out / WORK_DIR / "progress")
        else:
            ex.run()
        return finalize(recipe, out)


def submit_slurm(recipe: Recipe, out: Path, *, workers: int, limit: int | None, strict: bool,
                 options: dict) -> dict[str, Any]:
    """Submit the build as a Slurm job array, and `finalize` as a job that starts when every
    array task has succeeded. Returns the job ids. Re-running submits only unfinished tasks."""
    with lock_out_ready(recipe, out, limit=limit):
        prepare_sources(recipe, out / WORK_DIR, limit=limit, strict=strict)  # on this node, before the array
        ex = make_executor(recipe, out, workers=workers, limit=limit, strict=strict, executor="slurm",
                           options=options)
        fin = make_datatrove_executor("slurm", [FinalizeStep(recipe, out)], tasks=1, workers=1,
                                      logging_dir=out / WORK_DIR / "datatrove-finalize", opts=options,
                                      name=f"{recipe.name}-finalize", depends=ex)
        fin.run()  # launches `ex` first, then itself with --dependency=afterok:<ex's job id>
        return {"tasks": ex.job_id, "finalize": fin.job_id,
                "script": str(out / WORK_DIR / "datatrove" / "launch_script.slurm")}


@contextmanager
def lock_out_ready(recipe: Recipe, out: Path, *, limit: int | None):
    """Lock OUT and prepare it (stamp, resolved recipe) for the length of a `with` block."""
    check_out(recipe, out, limit=limit)  # before a lock file lands in someone else's folder
    out.mkdir(parents=True, exist_ok=True)
    with lock_folder(out, WORK_DIR):
        prepare_out(recipe, out, limit=limit)
        yield


def prewarm(recipe: Recipe) -> None:
    """Import streaming (torch, transformers: ~9 s) and load the tokenizer (~1 s) once here, so
    forked local workers inherit both instead of paying for them again."""
    import streaming  # noqa: F401

    load_tokenizer(recipe.tokenizer)
