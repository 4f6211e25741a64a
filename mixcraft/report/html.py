"""The HTML page of `stats --report`: one file, no external assets (plots are base64 data URIs)."""

from __future__ import annotations

from html import escape
from typing import Any

from mixcraft.report.summary import fmt_count

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0 1.6em; font-size: 13px; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 9px; text-align: right; }
th:first-child, td:first-child, td.l, th.l { text-align: left; }
tr.bucket td { color: #666; }
.off { color: #b00; font-weight: 600; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0 1.5em; }
code { background: #f4f4f4; padding: 1px 4px; }
"""


def _pct(v: float | None) -> str:
    return "(shared)" if v is None else f"{100 * v:.2f}%"


def _dev(v: float | None) -> str:
    if v is None:
        return ""
    cls = ' class="off"' if abs(v) > 1.0 else ""
    return f"<span{cls}>{v:+.2f}</span>"


def _row(cells: list[str], cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<tr{attr}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _mixture_table(stats: dict[str, Any]) -> str:
    head = ["source", "bucket", "docs", "rows", "tokens", "target", "actual", "dev pp", "len mean", "median",
            "p90", "split", "padding", "repeated", "dropped"]
    lines = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for src in stats["sources"]:
        mine = [s for s in stats["streams"] if s["source"] == src["source"]]
        dropped = ", ".join(f"{escape(k)} {v:,}" for k, v in sorted(src["dropped"].items(), key=lambda kv: -kv[1]))
        bucket = escape(mine[0]["bucket"]) if len(mine) == 1 else "(all)"
        lines.append(_row(_cells(src, escape(src["source"]), bucket) + [f"{src['repeated']:,}", dropped or "-"]))
        for s in mine if len(mine) > 1 else []:
            lines.append(_row(_cells(s, "", f"└ {escape(s['bucket'])}") + ["", ""], "bucket"))
    return "\n".join(lines) + "</table>"


def _cells(r: dict[str, Any], name: str, bucket: str) -> list[str]:
    return [name, bucket, f"{r['docs']:,}", f"{r['rows']:,}", f"{r['tokens']:,}", _pct(r["target"]),
            _pct(r["actual"]), _dev(r["deviation_pp"]), fmt_count(r["len_mean"]), fmt_count(r["len_median"]), fmt_count(r["len_p90"]),
            f"{r['split']:,}", f"{r['padding']:,}"]


def _ledger_table(ledger: dict[str, Any]) -> str:
    head = ["source", "read", "kept", "dropped", "split", "tokens kept", "packed", "tail", "drop reasons"]
    lines = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for name, led in ledger.items():
        d, t = led["docs"], led["tokens"]
        reasons = ", ".join(f"{escape(k)} {v:,}" for k, v in d["dropped"].items()) or "-"
        lines.append(_row([escape(name), f"{d['read']:,}", f"{d['kept']:,}", f"{sum(d['dropped'].values()):,}",
                           f"{d['split']:,}", f"{t['kept']:,}", f"{t['packed']:,}", f"{t['tail']:,}", reasons]))
    return "\n".join(lines) + "</table>"


def _why(stats: dict[str, Any]) -> str:
    if not stats["why"]:
        return "<p>Every source is within 1 percentage point of its target.</p>"
    items = "".join(f"<li><b>{escape(s)}</b>: {escape(w)}</li>" for s, w in stats["why"].items())
    return f"<p>Sources more than 1 percentage point off target, and why:</p><ul>{items}</ul>"


def _premixed(stats: dict[str, Any]) -> str:
    pm = stats.get("premixed")
    if not pm:
        return ""
    rows = "".join(_row([escape(s["path"]), f"{s['rows']:,}", f"{s['rows_available']:,}", f"{s['tokens']:,}",
                         _pct(s["proportion"]), _pct(s["tokens"] / pm["tokens"] if pm["tokens"] else 0)])
                   for s in pm["streams"])
    head = "".join(f"<th>{h}</th>" for h in ("stream", "rows used", "rows built", "tokens", "target", "actual"))
    return (f"<h2>Pre-mixed stream</h2><p><code>{escape(pm['path'])}/</code>: {pm['rows']:,} rows, "
            f"{pm['tokens']:,} tokens, interleaved in exact proportions.</p><table><tr>{head}</tr>{rows}</table>")


def render_html(stats: dict[str, Any], images: dict[str, str]) -> str:
    """The page; `images` maps a PNG file name to its base64 text."""
    recipe = stats["recipe"]
    title = f"mixcraft report: {escape(recipe['name'])}"
    streams = "<br>".join(f"<code>{escape(s)}</code>" for s in stats["prolong_streams"])
    plots = "".join(f'<h3>{escape(name)}</h3><img alt="{escape(name)}" src="data:image/png;base64,{data}">'
                    for name, data in images.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>{_STYLE}</style></head>
<body>
<h1>{title}</h1>
<p>Recipe <code>{escape(str(recipe.get('path', '')))}</code> (sha256 {escape(recipe['sha256'][:12])}),
{stats['seq_len']:,}-token rows, {stats['packed_tokens']:,} tokens packed, total_tokens {fmt_count(stats['total_tokens'])}.
Shares are of packed tokens; lengths are of kept documents (median and p90 within 9%).</p>
<h2>Mixture</h2>
{_mixture_table(stats)}
{_why(stats)}
<h2>Ledger</h2>
{_ledger_table(stats['ledger'])}
{_premixed(stats)}
<h2>Streams for ProLong's trainer (<code>path@proportion</code>, relative to the output folder)</h2>
<p>{streams}</p>
<h2>Plots</h2>
{plots}
</body></html>
"""
