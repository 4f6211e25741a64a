"""One build task: one source's share of the input, start to finish, as a chain of datatrove
steps (build/steps.py), and the result file that marks it done.

A task writes its part of each bucket's subset (`OUT/<source>/<bucket>/<task>/`) and its result
(ledger, counts, lengths) to `OUT/.mixcraft/tasks/<source>/<task>.json`. A task killed midway
leaves no result and no completion marker, so a re-run redoes exactly that task from scratch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from datatrove.pipeline.base import PipelineStep

from mixcraft.build.plan import TaskSpec, plan_tasks, split_limit, task_doc_cap, unit_order_seed
from mixcraft.build.progress import TaskProgress
from mixcraft.build.sinks import BucketSink
from mixcraft.build.steps import (
    DropDuplicates,
    FilterText,
    FilterTokens,
    HoldOut,
    KeepStage,
    PackRows,
    ReadSource,
    Sample,
    TaskLedgers,
    Tokenize,
    WriteRows,
)
from mixcraft.core.ledger import Ledger
from mixcraft.core.mixture import bucket_budgets, max_passes
from mixcraft.core.outdir import OutLayout, write_atomic
from mixcraft.core.pack import subset_has_mask
from mixcraft.core.recipe import Recipe, Source
from mixcraft.core.tokenize import Tok, load_tokenizer
from mixcraft.curate.dedup import load_verdicts
from mixcraft.curate.filters import build_filters
from mixcraft.mds import SubsetWriter
from mixcraft.readers import make_reader
from mixcraft.readers.base import Reader
from mixcraft.readers.chat import ChatConfig


@dataclass(frozen=True)
class TaskResult:
    """What a finished task hands to finalize (saved as JSON between processes)."""

    ledger: dict
    buckets: dict[str, dict]
    validation: dict[str, dict]  # bucket -> rows, tokens, pieces, docs of the held-out part (empty: no split)
    mixture: dict[str, int]
    seen_lengths: dict


def pad_token_id(tok: Tok) -> int:
    """What best-fit padding is made of: the end-of-text token (Llama-3: 128001), else 0. The
    padding span has mask 0, so the id never reaches the loss; it only has to be a valid token."""
    return tok.eos_id if tok.eos_id is not None else 0


def task_pipeline(recipe: Recipe, spec: TaskSpec, out: Path, ledger: Ledger, *, limit: int | None
                  ) -> tuple[list[PipelineStep], TaskProgress]:
    """The steps of one task, in order (see build/steps.py for each one's contract)."""
    source, layout = recipe.source(spec.source), OutLayout(out)
    ledgers = TaskLedgers(ledger)
    tok = load_tokenizer(recipe.tokenizer)
    seed = unit_order_seed(recipe, source)
    first = make_reader(source.name, source.reader, ledger, work_dir=layout.prepare(source.name), order_seed=seed)
    units = first.task_units(spec.task, spec.n_tasks)

    def reader_for(led: Ledger) -> Reader:
        return first if led is ledger else make_reader(source.name, source.reader, led,
                                                       work_dir=layout.prepare(source.name), order_seed=seed)

    progress = TaskProgress(layout.progress(source.name, spec.task), source.name, sum(u.size_bytes for u in units))
    filters = build_filters(source.filters, layout.work)
    # Tasks past the last unit get nothing to read; the budget is shared by those that do.
    budgets = bucket_budgets(recipe, source, first.active_tasks(spec.n_tasks))
    sinks = [BucketSink(b, recipe.seq_len, ledger, budgets[b.name], packing=source.packing,
                        with_mask=_with_mask(source, b.min_tokens), pad_id=pad_token_id(tok))
             for b in source.buckets]
    steps = [
        ReadSource(reader_for, ledgers, task=spec.task, n_tasks=spec.n_tasks, passes=max_passes(source),
                   max_docs=task_doc_cap(source, spec.task, limit), progress=progress),
        DropDuplicates(load_verdicts(layout.verdicts(source.name, spec.task)), ledgers),
        KeepStage(recipe.stage, recipe.seed, source.name, ledgers),
        FilterText(filters, ledgers),
        Tokenize(tok, ledgers, add_bos=recipe.add_bos, add_eos=recipe.add_eos),
        FilterTokens(filters, ledgers),
        _hold_out(recipe, source, spec, layout, ledgers, pad_token_id(tok)),
        Sample(source, recipe.seed, ledgers, progress),
        PackRows(sinks, ledger),
        WriteRows(_writers(recipe, source, spec, layout)),
    ]
    return steps, progress


def _hold_out(recipe: Recipe, source: Source, spec: TaskSpec, layout: OutLayout, ledgers: TaskLedgers,
              pad_id: int) -> HoldOut:
    """The validation split's step: its own packers (best-fit in whole-document buckets, so a
    small held-out set is not lost to a final partial row) and writers, and a private ledger
    (held-out documents are counted `held_out` in the task's)."""
    val = recipe.validation
    if val is None:
        return HoldOut(None, recipe.seed, source.name, ledgers, [], {}, None)
    scratch = Ledger(source.name)
    sinks = [BucketSink(b, recipe.seq_len, scratch, None, packing="best_fit" if b.min_tokens == 0 else source.packing,
                        with_mask=_val_mask(source, b.min_tokens), pad_id=pad_id) for b in source.buckets]
    writers = {b.name: SubsetWriter(layout.val_part(source.name, b.name, spec.task), domain=source.name,
                                    with_mask=_val_mask(source, b.min_tokens), compression=recipe.output.compression,
                                    size_limit=recipe.output.shard_size_bytes,
                                    doc_ids=recipe.output.doc_ids) for b in source.buckets}
    cap = split_limit(val.max_docs, spec.task, spec.n_tasks)
    return HoldOut(val, recipe.seed, source.name, ledgers, sinks, writers, cap)


def _val_mask(source: Source, min_tokens: int) -> bool:
    return subset_has_mask("best_fit" if min_tokens == 0 else source.packing, min_tokens,
                           isinstance(source.reader, ChatConfig))


def _with_mask(source: Source, min_tokens: int) -> bool:
    return subset_has_mask(source.packing, min_tokens, isinstance(source.reader, ChatConfig))


def _writers(recipe: Recipe, source: Source, spec: TaskSpec, layout: OutLayout) -> dict[str, SubsetWriter]:
    return {b.name: SubsetWriter(layout.task_part(source.name, b.name, spec.task), domain=source.name,
                                 with_mask=_with_mask(source, b.min_tokens), compression=recipe.output.compression,
                                 size_limit=recipe.output.shard_size_bytes, doc_ids=recipe.output.doc_ids)
            for b in source.buckets}


def run_pipeline(steps: list[PipelineStep], rank: int = 0, world_size: int = 1) -> None:
    """Chain the steps as datatrove's executors do, and drain the last one."""
    data: Iterator | None = None
    for step in steps:
        data = step(data, rank, world_size)
    for _ in data or ():
        pass


def run_task(recipe: Recipe, spec: TaskSpec, out: Path, *, limit: int | None, strict: bool) -> None:
    """One task of one source, start to finish; its result file marks it done."""
    layout = OutLayout(out)
    ledger = Ledger(spec.source, strict=strict)
    if recipe.output.write_dropped:
        ledger.write_dropped_to(layout.dropped(spec.source, spec.task))
    steps, progress = task_pipeline(recipe, spec, out, ledger, limit=limit)
    run_pipeline(steps)
    ledger.close()
    read, hold, sample, pack, write = steps[0], steps[6], steps[7], steps[8], steps[9]
    buckets = {s.bucket.name: {**write.writers[s.bucket.name].counts(), **s.to_dict()} for s in pack.sinks}
    result = TaskResult(ledger=ledger.to_dict(), buckets=buckets, validation=hold.finish(),
                        mixture={"passes": read.passes_started, "docs_repeated": sample.docs_repeated,
                                 "tokens_repeated": sample.tokens_repeated},
                        seen_lengths=sample.seen.to_dict())
    write_atomic(layout.task_result(spec.source, spec.task), json.dumps(result.__dict__, indent=1))
    progress.save(done=True)


def read_task_results(recipe: Recipe, source: Source, out: Path) -> list[TaskResult]:
    layout = OutLayout(out)
    return [TaskResult(**json.loads(layout.task_result(source.name, t).read_text())) for t in range(source.tasks)]


def missing_tasks(recipe: Recipe, out: Path) -> list[str]:
    """Tasks of the plan without a result file, as 'source/task'."""
    layout = OutLayout(out)
    return [f"{s.source}/{s.task:05d}" for s in plan_tasks(recipe)
            if not layout.task_result(s.source, s.task).is_file()]


class TaskStep(PipelineStep):
    """The datatrove step an executor runs: mixcraft task number `rank` of the build plan."""

    name = "mixcraft task"
    type = "mixcraft"

    def __init__(self, recipe: Recipe, out: Path, *, limit: int | None, strict: bool):
        super().__init__()
        self.recipe, self.out, self.limit, self.strict = recipe, out, limit, strict

    def run(self, data: Iterator | None = None, rank: int = 0, world_size: int = 1) -> Iterator:
        spec = plan_tasks(self.recipe)[rank]
        with self.track_time():
            run_task(self.recipe, spec, self.out, limit=self.limit, strict=self.strict)
        yield from ()
