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
    stages                         a length curriculum; see mixcraft/build/curriculum.py

Every decision is a pure function of (seed, source, document id), so it does not depend on
worker count or read order. A document with repeat r and hash u in [0, 1) is used in pass p
iff p < r - u: floor(r) or floor(r) + 1 times, r on average. Copies are made by re-reading the
source in a new pass, never next to the original, so a document never follows itself in a row.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from mixcraft.core.ledger import Ledger
from mixcraft.core.pack import TokDoc

LONG_TEXT_KEYS = {"min_tokens": int, "upsample": (int, float), "remove": bool}
MAX_REPEAT = 100  # beyond this a source is better fixed at its input than re-read 100 times


def unit_hash(seed: int, *parts: str) -> float:
    """A uniform number in [0, 1) fixed by the seed and the parts (stable across processes,
    unlike Python's `hash`)."""
    key = "\0".join([str(seed), *parts]).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2.0**64


# ---- recipe validation (called from recipe.py; `ctx.fail` makes the one-line error) ----

def _number(ctx: Any, where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ctx.fail(where, f"expected a number, got {value!r}")
    return float(value)


def parse_long_text(ctx: Any, where: str, raw: Any) -> dict[str, Any] | None:
    """`long_text: {min_tokens: 4096, upsample: 2.0, remove: false}`, defaults filled in."""
    if raw is None:
        return None
    from mixcraft.recipe import check_keys

    check_keys(ctx, where, raw, LONG_TEXT_KEYS, required=("min_tokens",))
    if raw["min_tokens"] < 1:
        raise ctx.fail(f"{where}.min_tokens", f"must be >= 1, got {raw['min_tokens']}")
    upsample = _number(ctx, f"{where}.upsample", raw.get("upsample", 1.0))
    if not 0 < upsample <= MAX_REPEAT:
        raise ctx.fail(f"{where}.upsample", f"must be in (0, {MAX_REPEAT}], got {upsample:g} "
                       "(to drop long documents write `remove: true`)")
    remove = raw.get("remove", False)
    if remove and upsample != 1.0:
        raise ctx.fail(where, "`remove: true` drops long documents, so `upsample` has no effect; keep one of them")
    return {"min_tokens": raw["min_tokens"], "upsample": upsample, "remove": remove}


def parse_source_knobs(ctx: Any, where: str, raw: dict[str, Any]) -> dict[str, Any]:
    """The mixture keys of one source, validated: repeat, max_tokens, max_docs, long_text."""
    repeat = _number(ctx, f"{where}.repeat", raw.get("repeat", 1.0))
    if not 0 < repeat <= MAX_REPEAT:
        raise ctx.fail(f"{where}.repeat", f"must be in (0, {MAX_REPEAT}], got {repeat:g} "
                       "(to leave a source out, remove it from the recipe)")
    for key in ("max_tokens", "max_docs"):
        if key in raw and raw[key] < 1:
            raise ctx.fail(f"{where}.{key}", f"must be >= 1, got {raw[key]}")
    return {"repeat": repeat, "max_tokens": raw.get("max_tokens"), "max_docs": raw.get("max_docs"),
            "long_text": parse_long_text(ctx, f"{where}.long_text", raw.get("long_text"))}


def apply_recipe_knobs(ctx: Any, recipe: Any, data: dict[str, Any]) -> None:
    """Recipe-level knobs: `long_text` applies to every source that sets none of its own; the
    name `premixed` is taken when `output.premix` is on."""
    recipe.long_text = parse_long_text(ctx, "long_text", data.get("long_text"))
    for s in recipe.sources:
        if s.long_text is None and recipe.long_text is not None:
            s.long_text = dict(recipe.long_text)
    if recipe.output.premix and any(s.name == "premixed" for s in recipe.sources):
        raise ctx.fail("sources[premixed]", "the name `premixed` is where output.premix writes; rename the source")


# ---- budgets ----

def bucket_budgets(recipe: Any, source: Any, n_tasks: int) -> dict[str, float | None]:
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


def source_budget(recipe: Any, source: Any) -> float | None:
    """The source's whole budget in tokens (None: no budget, everything is packed)."""
    per_task = bucket_budgets(recipe, source, 1)
    if any(v is None for v in per_task.values()):
        return None
    if all(b.proportion is not None for b in source.buckets):
        return sum(per_task.values())
    return next(iter(per_task.values()))


def doc_cap(limit: int | None, max_docs: int | None) -> int | None:
    """Documents to read per source: the smaller of `--limit` and the recipe's `max_docs`."""
    caps = [c for c in (limit, max_docs) if c is not None]
    return min(caps) if caps else None


# ---- sampling ----

def doc_repeat(source: Any, n_tokens: int) -> float:
    """Expected uses of a document of `n_tokens` tokens (0: removed)."""
    lt = source.long_text
    if lt is not None and n_tokens >= lt["min_tokens"]:
        return 0.0 if lt["remove"] else source.repeat * lt["upsample"]
    return source.repeat


def max_passes(source: Any) -> int:
    lt = source.long_text
    most = source.repeat * (lt["upsample"] if lt and not lt["remove"] else 1.0)
    return max(1, math.ceil(most - 1e-12))


class Sampler:
    """Runs a source in passes and decides which documents each pass uses.

    Pass 1 reads with the task's ledger: a document not used is dropped (`sampled_out`,
    `long_removed`). Later passes re-read with a scratch ledger, since their input was already
    counted; each copy they use is counted as one more document read, so the ledger's
    `read == kept + dropped` still holds, and `docs_repeated` says how many reads were copies.
    """

    def __init__(self, source: Any, seed: int, ledger: Ledger):
        self.source, self.seed, self.ledger = source, seed, ledger
        self.counts: Counter = Counter()

    def run(self, make_docs: Callable[[Ledger], Iterable[TokDoc]]) -> Iterator[TokDoc]:
        for p in range(max_passes(self.source)):
            self.counts["passes"] = p + 1
            led = self.ledger if p == 0 else Ledger(self.source.name)
            for doc in make_docs(led):
                if self._use(doc, p):
                    yield doc

    def _use(self, doc: TokDoc, p: int) -> bool:
        n = len(doc.ids)
        r = doc_repeat(self.source, n)
        use = p < r - unit_hash(self.seed, self.source.name, doc.doc_id)
        if p == 0 and not use:
            self.ledger.drop("long_removed" if r == 0 else "sampled_out", where=doc.doc_id, tokens=n)
        elif p > 0 and use:
            self.ledger.read()
            self.counts["docs_repeated"] += 1
            self.counts["tokens_repeated"] += n
        return use

    def to_dict(self) -> dict[str, int]:
        return {"passes": self.counts["passes"], "docs_repeated": self.counts["docs_repeated"],
                "tokens_repeated": self.counts["tokens_repeated"]}


def keep_stage(docs: Iterable[Any], recipe: Any, source: Any, ledger: Ledger) -> Iterator[Any]:
    """In a curriculum stage, keep the documents hashed into this stage's share; the others
    belong to another stage (`other_stage`), so no document is trained on in two stages."""
    stage = getattr(recipe, "stage", None)
    if not stage:
        yield from docs
        return
    lo, hi = stage["lo"], stage["hi"]
    for doc in docs:
        u = unit_hash(recipe.seed, source.name, str(doc.id), "stage")
        if lo <= u < hi:
            yield doc
        else:
            ledger.drop("other_stage", where=str(doc.id))


def summarize_source(recipe: Any, source: Any, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """What manifest.json records about a source's mixture: knobs, budget, passes, copies,
    how many tasks met their share of the budget, and the lengths of all documents offered."""
    from mixcraft.core.lengths import merge_dicts

    mix = [p.get("mixture", {}) for p in parts]
    return {
        "proportion": source.proportion, "budget_tokens": source_budget(recipe, source),
        "bucket_proportions": {b.name: b.proportion for b in source.buckets},  # None: buckets share the source's
        "bucket_min_tokens": {b.name: b.min_tokens for b in source.buckets},
        "repeat": source.repeat, "max_tokens": source.max_tokens, "max_docs": source.max_docs,
        "long_text": source.long_text,
        "passes": max((m.get("passes", 1) for m in mix), default=1),
        "docs_repeated": sum(m.get("docs_repeated", 0) for m in mix),
        "tokens_repeated": sum(m.get("tokens_repeated", 0) for m in mix),
        "tasks": len(parts), "tasks_budget_reached": sum(bool(p["ledger"]["budget_reached"]) for p in parts),
        "seen_lengths": merge_dicts(p.get("seen_lengths") for p in parts),
    }


def describe_knobs(recipe: Any) -> list[str]:
    """One line per source whose mixture knobs differ from the defaults (for `--dry-run`)."""
    lines = []
    for s in recipe.sources:
        parts = []
        if s.repeat != 1.0:
            parts.append(f"repeat {s.repeat:g} ({'downsampled' if s.repeat < 1 else f'up to {max_passes(s)} passes'})")
        if s.max_tokens is not None:
            parts.append(f"max_tokens {s.max_tokens:,}")
        if s.max_docs is not None:
            parts.append(f"max_docs {s.max_docs:,}")
        lt = s.long_text
        if lt is not None:
            what = "removed" if lt["remove"] else f"upsampled x{lt['upsample']:g}"
            parts.append(f"documents >= {lt['min_tokens']:,} tokens {what}")
        if parts:
            lines.append(f"  {s.name}: {', '.join(parts)}")
    if recipe.output.premix:
        lines.append("  output.premix: OUT/premixed/ interleaves every stream in exact proportions")
    return (["mixture knobs:"] + lines) if lines else []
