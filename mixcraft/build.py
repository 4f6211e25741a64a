"""The build: the one place that knows stage order.

    read -> filter (text) -> tokenize -> filter (tokens) -> route to length bucket -> pack -> write MDS

Each source is split into `tasks` datatrove tasks (a task reads every `tasks`-th input unit).
Tasks run on a datatrove executor; each writes its own MDS part per bucket and its own ledger.
When all are done, the parts are merged into one index per (source, bucket) and the ledgers
into `manifest.json`. Because the task split comes from the recipe, not from `--workers`, the
shards are the same whatever the worker count. A task killed midway leaves no completion
marker, so a re-run redoes exactly that task from scratch (datatrove's `skip_completed`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datatrove.pipeline.base import PipelineStep

from mixcraft import __version__
from mixcraft.curate.dedup import drop_duplicates, load_verdicts
from mixcraft.curate.filters import build_filters
from mixcraft.ledger import Ledger, merge_ledgers
from mixcraft.lengths import LengthHistogram, merge_bucket_stats, track_lengths
from mixcraft.mds import SubsetWriter, merge_subset, preload, shard_files
from mixcraft.mixture import Sampler, bucket_budgets, doc_cap, keep_stage, summarize_source
from mixcraft.prepare import prepare_dir, prepare_sources
from mixcraft.readers import make_reader
from mixcraft.recipe import Recipe, write_resolved
from mixcraft.stages import (BucketSink, Progress, filter_text, filter_tokens, route_and_pack, take_docs,
                             tokenize_docs)
from mixcraft.tokenize import load_tokenizer

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
    with_mask = source.reader["type"] == "chat"
    # Tasks past the last unit get nothing to read; the budget is shared by those that do.
    budgets = bucket_budgets(recipe, source, reader.active_tasks(spec.n_tasks))
    sinks = [
        BucketSink(b, recipe.seq_len, ledger,
                   SubsetWriter(out / source.name / b.name / f"{spec.task:05d}", domain=source.name,
                                with_mask=with_mask, compression=recipe.output.compression,
                                size_limit=recipe.output.shard_size_bytes),
                   budgets[b.name])
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
    tdocs = sampler.run(tokenized)  # repeat / downsample / long-text knobs (mixcraft/mixture.py)
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


def make_executor(recipe: Recipe, out: Path, *, workers: int, limit: int | None, strict: bool,
                  executor: str = "local"):
    from mixcraft.executors import quiet_local_executor

    plan = plan_tasks(recipe)
    step = BuildStep(recipe, out, limit=limit, strict=strict)
    if executor != "local":
        from mixcraft.errors import UserError

        raise UserError(f"--executor {executor}: only 'local' is available in this version")
    return quiet_local_executor([step], tasks=len(plan), workers=min(workers, len(plan)),
                                logging_dir=str(out / WORK_DIR / "datatrove"))


def prepare_out(recipe: Recipe, out: Path, *, limit: int | None) -> None:
    """Create OUT; refuse to mix two different builds in one folder."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = out / WORK_DIR / "build.json"
    identity = {"recipe_sha256": recipe.digest(), "limit": limit, "mixcraft": __version__}
    if stamp.is_file():
        before = json.loads(stamp.read_text())
        if before != identity:
            from mixcraft.errors import UserError

            raise UserError(f"{out}: holds a build of a different recipe or --limit ({before['recipe_sha256'][:12]}"
                            f", limit {before['limit']}); choose another --out or delete the folder")
    elif any(p for p in out.iterdir()):
        from mixcraft.errors import UserError

        raise UserError(f"{out}: folder is not empty and holds no mixcraft build; choose another --out")
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(identity))
    write_resolved(recipe, out / "recipe.resolved.yaml")


def finalize(recipe: Recipe, out: Path) -> dict:
    """Merge per-task indexes and ledgers into the subsets' index.json and manifest.json."""
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
                            "mask": source.reader["type"] == "chat", **totals,
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
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def build(recipe: Recipe, out: Path, *, workers: int = 1, limit: int | None = None, strict: bool = False,
          executor: str = "local", show_progress: bool = True) -> dict:
    prepare_out(recipe, out, limit=limit)
    # Load once here: forked workers inherit the tokenizer and the imported MDS writer
    # (importing streaming pulls in torch, ~5 s) instead of paying for them per task.
    load_tokenizer(recipe.tokenizer)
    preload()
    prepare_sources(recipe, out / WORK_DIR, limit=limit, strict=strict)
    ex = make_executor(recipe, out, workers=workers, limit=limit, strict=strict, executor=executor)
    if show_progress and sys.stderr.isatty():
        from mixcraft.progress import run_with_progress

        run_with_progress(ex, recipe, out / WORK_DIR / "progress")
    else:
        ex.run()
    manifest = finalize(recipe, out)
    if recipe.output.premix:
        from mixcraft.premix import write_premix

        manifest = write_premix(recipe, out, manifest)
    return manifest
