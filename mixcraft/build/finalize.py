"""After every task: merge the tasks' parts into one index per (source, bucket), their ledgers
and counts into `manifest.json`, and write the pre-mixed stream if the recipe asks.

Merging is idempotent, so a build killed here and re-run ends with the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

from mixcraft import __version__
from mixcraft.build.premix import write_premix
from mixcraft.build.task import TaskResult, missing_tasks, read_task_results
from mixcraft.core.ledger import merge_ledgers
from mixcraft.core.lengths import merge_bucket_stats, merge_dicts
from mixcraft.core.manifest import (
    MANIFEST_VERSION,
    Histogram,
    LedgerSummary,
    Manifest,
    RecipeRef,
    SourceSummary,
    Stream,
    SubsetPart,
    TokenizerInfo,
    write_manifest,
)
from mixcraft.core.mixture import source_budget
from mixcraft.core.outdir import VAL_DIR, OutLayout
from mixcraft.core.pack import subset_has_mask
from mixcraft.core.recipe import Recipe, Source
from mixcraft.core.tokenize import load_tokenizer
from mixcraft.errors import UserError
from mixcraft.mds import index_sha256, merge_subset, shard_files
from mixcraft.readers.chat import ChatConfig
from mixcraft.schema import Where, parse

COUNTS = ("rows", "tokens", "pieces", "docs", "split", "tail_tokens", "padding")


def finalize(recipe: Recipe, out: Path) -> Manifest:
    """Merge per-task indexes and ledgers into the subsets' index.json and manifest.json."""
    layout = OutLayout(out)
    if missing := missing_tasks(recipe, out):
        raise UserError(f"{out}: {len(missing)} task(s) did not finish ({', '.join(missing[:5])}); their logs are "
                        f"in {layout.logs / 'logs'}; re-run the same command to resume")
    streams, ledgers, sources, shards, indexes = [], {}, {}, {}, {}
    trial = json.loads(layout.stamp.read_text()).get("limit") is not None if layout.stamp.is_file() else False
    for source in recipe.sources:
        results = read_task_results(recipe, source, out)
        ledgers[source.name] = parse(LedgerSummary, merge_ledgers([r.ledger for r in results]), Where("ledger"))
        sources[source.name] = summarize_source(recipe, source, results)
        if not trial:  # a --limit trial may read too little to fill a row; that is no fault of the input
            check_not_empty(recipe, source, ledgers[source.name], results)
        for stream in source_streams(recipe, source, results):
            subsets = [stream.path] + ([stream.validation.path] if stream.validation else [])
            for rel in subsets:
                merge_subset(layout.subset(rel))
                shards[rel] = shard_files(layout.subset(rel))
                indexes[rel] = index_sha256(layout.subset(rel))
            streams.append(stream)
    manifest = Manifest(
        manifest_version=MANIFEST_VERSION, mixcraft_version=__version__,
        recipe=RecipeRef(name=recipe.name, path=recipe.path, sha256=recipe.digest()),
        tokenizer=TokenizerInfo(**load_tokenizer(recipe.tokenizer).describe()),
        seed=recipe.seed, seq_len=recipe.seq_len, total_tokens=recipe.total_tokens, streams=streams,
        prolong_streams=[f"{s.path}@{s.proportion:.6g}" for s in streams],
        ledger=ledgers, sources=sources, shards=shards, indexes=indexes)
    if recipe.output.premix:
        manifest = write_premix(recipe, out, manifest)
    return write_manifest(out, manifest)


def source_streams(recipe: Recipe, source: Source, results: list[TaskResult]) -> list[Stream]:
    """The streams of one source: its buckets' counts summed over its tasks."""
    src_tokens = sum(r.buckets[b.name]["tokens"] for r in results for b in source.buckets)
    chat = isinstance(source.reader, ChatConfig)
    streams = []
    for b in source.buckets:
        parts = [r.buckets[b.name] for r in results]
        totals = {k: sum(p[k] for p in parts) for k in COUNTS}
        if b.proportion is not None:
            proportion = b.proportion
        else:  # buckets of one source share its proportion by the tokens each received
            proportion = source.proportion * (totals["tokens"] / src_tokens if src_tokens else 1 / len(source.buckets))
        stats = merge_bucket_stats(parts)
        held = [r.validation[b.name] for r in results if b.name in r.validation]
        validation = SubsetPart(path=f"{source.name}/{b.name}/{VAL_DIR}", **{k: sum(h[k] for h in held)
                                for k in ("rows", "tokens", "docs")}) if held else None
        streams.append(Stream(
            source=source.name, bucket=b.name, path=f"{source.name}/{b.name}", proportion=proportion,
            target_proportion=b.proportion if b.proportion is not None else source.proportion,
            target_tokens=recipe.total_tokens * proportion if recipe.total_tokens else None,
            domain=source.name, mask=subset_has_mask(source.packing, b.min_tokens, chat), packing=source.packing,
            **totals, doc_lengths=Histogram(**stats["doc_lengths"]), row_pieces=Histogram(**stats["row_pieces"]),
            row_fill_pct=stats["row_fill_pct"], validation=validation))
    return streams


def summarize_source(recipe: Recipe, source: Source, results: list[TaskResult]) -> SourceSummary:
    mix = [r.mixture for r in results]
    return SourceSummary(
        proportion=source.proportion, budget_tokens=source_budget(recipe, source),
        bucket_proportions={b.name: b.proportion for b in source.buckets},
        bucket_min_tokens={b.name: b.min_tokens for b in source.buckets},
        repeat=source.repeat, max_tokens=source.max_tokens, max_docs=source.max_docs, long_text=source.long_text,
        passes=max((m.get("passes", 1) for m in mix), default=1),
        docs_repeated=sum(m.get("docs_repeated", 0) for m in mix),
        tokens_repeated=sum(m.get("tokens_repeated", 0) for m in mix),
        tasks=len(results), tasks_budget_reached=sum(bool(r.ledger["budget_reached"]) for r in results),
        seen_lengths=Histogram(**merge_dicts(r.seen_lengths for r in results)))


def check_not_empty(recipe: Recipe, source: Source, ledger: LedgerSummary, results: list[TaskResult]) -> None:
    """A source that packed no row fails the build (StreamingDataset and ProLong's loader refuse
    an empty stream), naming why its input gave nothing, unless the recipe marks it optional."""
    if source.optional or any(r.buckets[b.name]["rows"] for r in results for b in source.buckets):
        return
    counts = {**ledger.notes, **ledger.docs.dropped}
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
    why = "; ".join(f"{n:,} {reason}" + (f" (e.g. {ledger.examples[reason][0]})" if ledger.examples.get(reason)
                                         else "") for reason, n in top) or "its input held no document"
    raise UserError(f"{recipe.path}: sources[{source.name}]: 0 rows: {why}; fix its input, or set `optional: true` "
                    "on the source to build without it")
