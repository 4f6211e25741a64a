"""Why a source's actual share differs from its target: one sentence per source, built from
the manifest's budgets, the ledger and the per-task budget flags.

Shares are shares of the packed tokens, so one source falling short raises every other
source's share; the sentence says which way the cause runs.
"""

from __future__ import annotations

from mixcraft.core.manifest import LedgerSummary, Manifest, SourceSummary
from mixcraft.report.rows import SourceRow

DEVIATION_PP = 1.0  # a source further than this from its target gets an explanation


def _slack(src: SourceSummary, m: Manifest) -> int:
    """Tokens a budget may be missed by through rounding: each task fills or drops its last row."""
    return m.seq_len * max(1, src.tasks)


def _losses(led: LedgerSummary) -> str:
    """The largest drop reasons as a short parenthesis."""
    docs, tokens = led.docs.dropped, led.tokens.dropped
    top = sorted(docs, key=lambda r: (-tokens.get(r, 0), -docs[r]))[:3]
    parts = [f"{r} {docs[r]:,} docs" + (f" / {tokens[r]:,} tokens" if tokens.get(r) else "") for r in top]
    return f" (dropped: {'; '.join(parts)})" if parts else ""


def _short_buckets(name: str, src: SourceSummary, m: Manifest) -> str:
    """With bucket proportions (ProLong's 512K layout), which buckets ran short: usually the
    longest, for want of documents that long."""
    short = [f"bucket {s.bucket} got {s.tokens:,} of {s.target_tokens:,.0f} tokens"
             + (f" (documents of >= {src.bucket_min_tokens[s.bucket]:,} tokens ran out)"
                if src.bucket_min_tokens.get(s.bucket) else "")
             for s in m.source_streams(name)
             if src.bucket_proportions.get(s.bucket) is not None and s.target_tokens
             and s.tokens < s.target_tokens - m.seq_len]
    return f"; {'; '.join(short)}" if short else ""


def _short(row: SourceRow, src: SourceSummary, led: LedgerSummary, m: Manifest) -> str:
    """A source below its target: capped, exhausted, or some of its tasks exhausted."""
    got, budget = row.tokens, src.budget_tokens or 0
    asked = m.total_tokens * row.target
    if got == 0:  # nothing to upsample: say why the input gave nothing
        return f"packed nothing{_losses(led) or ' (its input held no document)'}; fix its input"
    if src.max_tokens is not None and src.max_tokens < asked:
        return (f"capped by max_tokens {src.max_tokens:,} (the proportion asks for {asked:,.0f} tokens); "
                "raise or remove max_tokens to reach the target")
    if got < budget - _slack(src, m):
        reached, tasks = src.tasks_budget_reached, src.tasks
        if reached:
            return (f"budget not reached: {tasks - reached} of {tasks} tasks ran out of input before their share "
                    f"({budget / tasks:,.0f} tokens each), packing {got:,} of {budget:,.0f}; tasks split the budget "
                    "evenly, so give this source fewer tasks or evenly sized inputs")
        read = f" in {src.passes} passes (repeat {src.repeat:g})" if src.passes > 1 else ""
        return (f"budget not reached: source exhausted{read} after {got:,} tokens of {budget:,.0f} needed"
                f"{_short_buckets(row.source, src, m)}{_losses(led)}; raise `repeat` to upsample it, "
                "add input, or lower total_tokens")
    return (f"on budget ({got:,} of {budget:,.0f} tokens); other sources packed more than theirs, since "
            f"budgets round up to whole {m.seq_len:,}-token rows in each task")


def _long(row: SourceRow, src: SourceSummary, others_short: list[str], m: Manifest) -> str:
    """A source above its target: on budget while others fell short, or rows rounding up."""
    got, budget = row.tokens, src.budget_tokens or 0
    if others_short:
        whose = "its target" if len(others_short) == 1 else "their targets"
        return (f"on budget ({got:,} of {budget:,.0f} tokens), but {', '.join(others_short)} fell short of "
                f"{whose}, so the mixture holds {m.packed_tokens():,} of {m.total_tokens:,} tokens and "
                "this share rises")
    return (f"packed {got:,} tokens for a budget of {budget:,.0f}: budgets round up to whole "
            f"{m.seq_len:,}-token rows in each task")


def explain_deviations(rows: list[SourceRow], m: Manifest) -> dict[str, str]:
    """{source: why} for every source whose share is more than DEVIATION_PP from its target."""
    off = [r for r in rows if abs(r.deviation_pp) > DEVIATION_PP]
    if not off:
        return {}
    if m.total_tokens is None:
        why = ("no total_tokens: every source was packed in full, so shares follow the input sizes; set "
               "total_tokens (or max_tokens per source) to enforce the proportions")
        return {r.source: why for r in off}
    short = [r.source for r in rows
             if r.tokens < m.total_tokens * r.target - _slack(m.sources[r.source], m)]
    out = {}
    for r in off:
        src, led = m.sources[r.source], m.ledger[r.source]
        if r.deviation_pp < 0:
            out[r.source] = _short(r, src, led, m)
        else:
            out[r.source] = _long(r, src, [s for s in short if s != r.source], m)
    return out
