"""Mixture control: how many tokens each source contributes, and how often each document is used.

Recipe knobs and where they act:

    total_tokens x proportion      token budget of a source (or of each bucket with bucket
                                   proportions); reading stops once the budget is met
    sources[].max_tokens           a cap on that budget (or the budget itself without total_tokens)
    sources[].max_docs             at most this many documents are read from the source
    sources[].repeat               expected uses of each document: 0.25 keeps a seeded quarter
                                   (the rest dropped as `sampled_out`); 2.5 reads the source in
                                   3 passes, every document in passes 1-2 and a seeded half in
                                   pass 3 (upsampling). Budgets still stop reading early.
    long_text (recipe or source)   Llama 2 Long's knobs for documents of >= min_tokens tokens:
                                   `upsample: F` multiplies their repeat (long-text upsampling);
                                   `remove: true` drops them as `long_removed` (the "remove
                                   long" ablation)
    stages                         a length curriculum; see mixcraft/build/load.py and run.py

Every decision is a pure function of (seed, source, document id), so it does not depend on
worker count or read order. A document with repeat r and hash u in [0, 1) is used in pass p
iff p < r - u: floor(r) or floor(r) + 1 times, r on average. Copies are made by re-reading the
source in a new pass, never next to the original, so a document never follows itself in a row.
"""

from __future__ import annotations

import hashlib
import math

from mixcraft.core.recipe import Recipe, Source, StageInfo


def unit_hash(seed: int, *parts: str) -> float:
    """A uniform number in [0, 1) fixed by the seed and the parts (stable across processes,
    unlike Python's `hash`)."""
    key = "\0".join([str(seed), *parts]).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2.0**64


# ---- budgets ----

def bucket_budgets(recipe: Recipe, source: Source, n_tasks: int) -> dict[str, float | None]:
    """Tokens each task may pack per bucket: total_tokens x proportion (capped by the source's
    `max_tokens`), shared evenly over the tasks that have input."""
    names = [b.name for b in source.buckets]
    cap = source.max_tokens
    if recipe.total_tokens is None:
        return {n: None if cap is None else cap / n_tasks for n in names}
    if all(b.proportion is not None for b in source.buckets):
        budgets = {b.name: recipe.total_tokens * b.proportion for b in source.buckets}
        total = sum(budgets.values())
        if cap is not None and total > cap:  # scale the buckets down together, keeping their ratio
            budgets = {n: v * cap / total for n, v in budgets.items()}
        return {n: v / n_tasks for n, v in budgets.items()}
    share = recipe.total_tokens * source.proportion
    if cap is not None:
        share = min(share, cap)
    # One budget for the source; each bucket may take all of it, routing decides the split.
    return {n: share / n_tasks for n in names}


def source_budget(recipe: Recipe, source: Source) -> float | None:
    """The source's whole budget in tokens (None: no budget, everything is packed)."""
    per_task = bucket_budgets(recipe, source, 1)
    if any(v is None for v in per_task.values()):
        return None
    if all(b.proportion is not None for b in source.buckets):
        return sum(per_task.values())
    return next(iter(per_task.values()))


# ---- sampling ----

def doc_repeat(source: Source, n_tokens: int) -> float:
    """Expected uses of a document of `n_tokens` tokens (0: removed)."""
    lt = source.long_text
    if lt is not None and n_tokens >= lt.min_tokens:
        return 0.0 if lt.remove else source.repeat * lt.upsample
    return source.repeat


def max_passes(source: Source) -> int:
    lt = source.long_text
    most = source.repeat * (lt.upsample if lt and not lt.remove else 1.0)
    return max(1, math.ceil(most - 1e-12))


def in_stage(stage: StageInfo, seed: int, source: str, doc_id: str) -> bool:
    """Whether a document belongs to a curriculum stage: its seeded hash falls in the stage's
    share [lo, hi), so no document is used in two stages."""
    return stage.lo <= unit_hash(seed, source, doc_id, "stage") < stage.hi
