"""Why a source's actual share differs from its target: one sentence per source, built from
the manifest's budgets, the ledger and the per-task budget flags.

Shares are shares of the packed tokens, so one source falling short raises every other
source's share; the sentence says which way the cause runs.
"""

from __future__ import annotations

from typing import Any

DEVIATION_PP = 1.0  # a source further than this from its target gets an explanation


def _slack(src: dict[str, Any], manifest: dict[str, Any]) -> int:
    """Tokens a budget may be missed by through rounding: each task fills or drops its last row."""
    return manifest["seq_len"] * max(1, src.get("tasks", 1))


def _losses(led: dict[str, Any]) -> str:
    """The largest drop reasons as a short parenthesis."""
    docs, tokens = led["docs"]["dropped"], led["tokens"]["dropped"]
    top = sorted(docs, key=lambda r: (-tokens.get(r, 0), -docs[r]))[:3]
    parts = [f"{r} {docs[r]:,} docs" + (f" / {tokens[r]:,} tokens" if tokens.get(r) else "") for r in top]
    return f" (dropped: {'; '.join(parts)})" if parts else ""


def _short_buckets(name: str, src: dict[str, Any], manifest: dict[str, Any]) -> str:
    """With bucket proportions (ProLong's 512K layout), which buckets ran short: usually the
    longest, for want of documents that long."""
    own = src.get("bucket_proportions", {})
    mins = src.get("bucket_min_tokens", {})
    short = [f"bucket {s['bucket']} got {s['tokens']:,} of {s['target_tokens']:,.0f} tokens"
             + (f" (documents of >= {mins[s['bucket']]:,} tokens ran out)" if mins.get(s["bucket"]) else "")
             for s in manifest["streams"]
             if s["source"] == name and own.get(s["bucket"]) is not None and s.get("target_tokens")
             and s["tokens"] < s["target_tokens"] - manifest["seq_len"]]
    return f"; {'; '.join(short)}" if short else ""


def _short(row: dict[str, Any], src: dict[str, Any], led: dict[str, Any], manifest: dict[str, Any]) -> str:
    """A source below its target: capped, exhausted, or some of its tasks exhausted."""
    got, budget = row["tokens"], src.get("budget_tokens") or 0
    asked = manifest["total_tokens"] * row["target"]
    cap = src.get("max_tokens")
    if cap is not None and cap < asked:
        return (f"capped by max_tokens {cap:,} (the proportion asks for {asked:,.0f} tokens); "
                "raise or remove max_tokens to reach the target")
    if got < budget - _slack(src, manifest):
        reached, tasks = src.get("tasks_budget_reached", 0), src.get("tasks", 1)
        if reached:
            return (f"budget not reached: {tasks - reached} of {tasks} tasks ran out of input before their share "
                    f"({budget / tasks:,.0f} tokens each), packing {got:,} of {budget:,.0f}; tasks split the budget "
                    "evenly, so give this source fewer tasks or evenly sized inputs")
        passes = src.get("passes", 1)
        read = f" in {passes} passes (repeat {src.get('repeat', 1):g})" if passes > 1 else ""
        return (f"budget not reached: source exhausted{read} after {got:,} tokens of {budget:,.0f} needed"
                f"{_short_buckets(row['source'], src, manifest)}{_losses(led)}; raise `repeat` to upsample it, "
                "add input, or lower total_tokens")
    return (f"on budget ({got:,} of {budget:,.0f} tokens); other sources packed more than theirs, since "
            f"budgets round up to whole {manifest['seq_len']:,}-token rows in each task")


def _long(row: dict[str, Any], src: dict[str, Any], others_short: list[str], manifest: dict[str, Any]) -> str:
    """A source above its target: on budget while others fell short, or rows rounding up."""
    got, budget = row["tokens"], src.get("budget_tokens") or 0
    packed = sum(r["tokens"] for r in manifest["streams"])
    if others_short:
        whose = "its target" if len(others_short) == 1 else "their targets"
        return (f"on budget ({got:,} of {budget:,.0f} tokens), but {', '.join(others_short)} fell short of "
                f"{whose}, so the mixture holds {packed:,} of {manifest['total_tokens']:,} tokens and "
                "this share rises")
    return (f"packed {got:,} tokens for a budget of {budget:,.0f}: budgets round up to whole "
            f"{manifest['seq_len']:,}-token rows in each task")


def explain_deviations(source_rows: list[dict[str, Any]], manifest: dict[str, Any]) -> dict[str, str]:
    """{source: why} for every source whose share is more than DEVIATION_PP from its target."""
    off = [r for r in source_rows if abs(r["deviation_pp"]) > DEVIATION_PP]
    if not off:
        return {}
    if manifest.get("total_tokens") is None:
        why = ("no total_tokens: every source was packed in full, so shares follow the input sizes; set "
               "total_tokens (or max_tokens per source) to enforce the proportions")
        return {r["source"]: why for r in off}
    sources = manifest.get("sources", {})
    short = [r["source"] for r in source_rows if r["tokens"] < manifest["total_tokens"] * r["target"]
             - _slack(sources.get(r["source"], {}), manifest)]
    out = {}
    for r in off:
        src, led = sources.get(r["source"], {}), manifest["ledger"][r["source"]]
        if r["deviation_pp"] < 0:
            out[r["source"]] = _short(r, src, led, manifest)
        else:
            out[r["source"]] = _long(r, src, [s for s in short if s != r["source"]], manifest)
    return out
