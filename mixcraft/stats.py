"""`mixcraft stats`: the mixture as built, per source and bucket, from manifest.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mixcraft.errors import UserError


def load_manifest(out: Path) -> dict[str, Any]:
    path = out / "manifest.json"
    if not path.is_file():
        raise UserError(f"{out}: no manifest.json here (is this a `mixcraft build` output folder, and did the "
                        "build finish?)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); re-run the build to rewrite it") from None


def mixture_rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per stream with actual vs target share of the packed tokens."""
    total = sum(s["tokens"] for s in manifest["streams"]) or 1
    rows = []
    for s in manifest["streams"]:
        led = manifest["ledger"][s["source"]]
        actual = s["tokens"] / total
        rows.append({
            "source": s["source"], "bucket": s["bucket"], "rows": s["rows"], "docs": s["docs"],
            "tokens": s["tokens"], "target": s["proportion"], "actual": actual,
            "deviation_pp": 100 * (actual - s["proportion"]), "split": s["split"], "padding": s["padding"],
            "dropped": led["docs"]["dropped"], "budget_reached": led["budget_reached"],
        })
    return rows


def _fmt_int(n: int) -> str:
    return f"{n:,}"


def render_table(manifest: dict[str, Any], console: Console) -> None:
    table = Table(title=f"{manifest['recipe']['name']}: {manifest['seq_len']:,}-token rows, "
                        f"tokenizer {manifest['tokenizer']['name']}")
    for col in ("source", "bucket", "docs", "rows", "tokens", "target", "actual", "dev (pp)", "split", "dropped"):
        table.add_column(col, justify="left" if col in ("source", "bucket", "dropped") else "right")
    for r in mixture_rows(manifest):
        dropped = ", ".join(f"{k} {v:,}" for k, v in sorted(r["dropped"].items(), key=lambda kv: -kv[1])) or "-"
        table.add_row(r["source"], r["bucket"], _fmt_int(r["docs"]), _fmt_int(r["rows"]), _fmt_int(r["tokens"]),
                      f"{100 * r['target']:.1f}%", f"{100 * r['actual']:.1f}%", f"{r['deviation_pp']:+.1f}",
                      _fmt_int(r["split"]), dropped)
    console.print(table)
    led_table = Table(title="ledger (documents and tokens per source)")
    for col in ("source", "read", "kept", "dropped", "split", "tokens kept", "packed", "tail"):
        led_table.add_column(col, justify="left" if col == "source" else "right")
    for name, led in manifest["ledger"].items():
        d, t = led["docs"], led["tokens"]
        led_table.add_row(name, _fmt_int(d["read"]), _fmt_int(d["kept"]), _fmt_int(sum(d["dropped"].values())),
                          _fmt_int(d["split"]), _fmt_int(t["kept"]), _fmt_int(t["packed"]), _fmt_int(t["tail"]))
    console.print(led_table)
