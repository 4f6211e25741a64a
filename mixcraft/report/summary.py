"""`mixcraft stats`: the mixture as built, per source and per bucket, from manifest.json.

Shares are of packed tokens. A source's target is its proportion in the recipe; a bucket's
target is its own proportion where the recipe gives buckets proportions (the stage-2 layout),
else the buckets share their source's target. Document lengths are of the documents kept in
a bucket, read from the build's length histograms (median and p90 within 9%).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mixcraft.errors import UserError
from mixcraft.core.lengths import LengthHistogram, merge_dicts


def load_manifest(out: Path) -> dict[str, Any]:
    path = out / "manifest.json"
    if not path.is_file():
        hint = ""
        if (out / "curriculum.json").is_file():
            hint = " it is a curriculum: give one stage's folder, e.g. OUT/<stage>"
        raise UserError(f"{out}: no manifest.json here (is this a `mixcraft build` output folder, and did the "
                        f"build finish?{hint})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); re-run the build to rewrite it") from None


def _lengths(hist: dict[str, Any] | None) -> dict[str, float | None]:
    s = LengthHistogram.from_dict(hist).summary()
    return {"len_mean": s["mean"], "len_median": s["median"], "len_p90": s["p90"]}


def mixture_rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (source, bucket) stream with actual vs target share of the packed tokens."""
    total = sum(s["tokens"] for s in manifest["streams"]) or 1
    sources = manifest.get("sources", {})
    rows = []
    for s in manifest["streams"]:
        led = manifest["ledger"][s["source"]]
        own = sources.get(s["source"], {}).get("bucket_proportions", {}).get(s["bucket"])
        actual = s["tokens"] / total
        rows.append({
            "source": s["source"], "bucket": s["bucket"], "path": s["path"], "rows": s["rows"], "docs": s["docs"],
            "tokens": s["tokens"], "target": own, "actual": actual,
            "deviation_pp": None if own is None else 100 * (actual - own),
            "split": s["split"], "padding": s["padding"], "tail_tokens": s["tail_tokens"],
            "dropped": led["docs"]["dropped"], "budget_reached": led["budget_reached"],
            **_lengths(s.get("doc_lengths")),
        })
    return rows


def source_rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per source: its streams summed, target = its proportion in the recipe."""
    total = sum(s["tokens"] for s in manifest["streams"]) or 1
    rows: dict[str, dict[str, Any]] = {}
    hists: dict[str, list] = {}
    for s in manifest["streams"]:
        r = rows.setdefault(s["source"], {"source": s["source"], "buckets": 0, "target": 0.0})
        r["buckets"] += 1
        r["target"] += s["proportion"]  # bucket shares of a source sum to its proportion
        for k in ("rows", "docs", "tokens", "split", "padding", "tail_tokens"):
            r[k] = r.get(k, 0) + s[k]
        hists.setdefault(s["source"], []).append(s.get("doc_lengths"))
    out = []
    for name, r in rows.items():
        led, src = manifest["ledger"][name], manifest.get("sources", {}).get(name, {})
        r["target"] = src.get("proportion", r["target"])
        r["actual"] = r["tokens"] / total
        r["deviation_pp"] = 100 * (r["actual"] - r["target"])
        r.update(_lengths(merge_dicts(hists[name])))
        r.update(dropped=led["docs"]["dropped"], read=led["docs"]["read"],
                 repeated=src.get("docs_repeated", 0), passes=src.get("passes", 1))
        out.append(r)
    return out


def stats_dict(manifest: dict[str, Any]) -> dict[str, Any]:
    """Everything `stats --json` prints."""
    from mixcraft.report.explain import explain_deviations

    sources = source_rows(manifest)
    return {"recipe": manifest["recipe"], "seq_len": manifest["seq_len"], "total_tokens": manifest["total_tokens"],
            "packed_tokens": sum(r["tokens"] for r in sources), "sources": sources,
            "streams": mixture_rows(manifest), "why": explain_deviations(sources, manifest),
            "prolong_streams": manifest.get("prolong_streams", []), "premixed": manifest.get("premixed"),
            "ledger": manifest["ledger"]}


def fmt_count(v: float | None) -> str:
    """A count with thousands separators; '-' when unknown."""
    return "-" if v is None else f"{v:,.0f}"


def _pct(v: float | None) -> str:
    return "(shared)" if v is None else f"{100 * v:.1f}%"


def _dev(v: float | None) -> str:
    if v is None:
        return ""
    text = f"{v:+.1f}"
    return f"[red]{text}[/]" if abs(v) > 1.0 else text


def _dropped(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(d.items(), key=lambda kv: -kv[1])) or "-"


_MIX_COLUMNS = ("source", "bucket", "docs", "rows", "tokens", "target", "actual", "dev pp", "len mean",
                "median", "p90", "split", "padding", "dropped")


def _mix_row(r: dict[str, Any], name: str, bucket: str, dropped: str) -> list[str]:
    return [name, bucket, f"{r['docs']:,}", f"{r['rows']:,}", f"{r['tokens']:,}", _pct(r["target"]),
            _pct(r["actual"]), _dev(r["deviation_pp"]), fmt_count(r["len_mean"]), fmt_count(r["len_median"]), fmt_count(r["len_p90"]),
            f"{r['split']:,}", f"{r['padding']:,}", dropped]


def mixture_table(stats: dict[str, Any]) -> Table:
    """Sources with their buckets beneath them (a source of one bucket is one line)."""
    table = Table(title=f"{stats['recipe']['name']}: {stats['seq_len']:,}-token rows, {stats['packed_tokens']:,} "
                        f"tokens packed (total_tokens {fmt_count(stats['total_tokens'])}); shares of packed tokens")
    for col in _MIX_COLUMNS:
        table.add_column(col, justify="left" if col in ("source", "bucket", "dropped") else "right")
    streams = stats["streams"]
    for src in stats["sources"]:
        mine = [s for s in streams if s["source"] == src["source"]]
        bucket = mine[0]["bucket"] if len(mine) == 1 else "(all)"
        table.add_row(*_mix_row(src, src["source"], bucket, _dropped(src["dropped"])))
        if len(mine) > 1:
            for s in mine:
                table.add_row(*_mix_row(s, "", f"└ {s['bucket']}", ""), style="dim" if s["target"] is None else "")
    return table


def ledger_table(manifest: dict[str, Any]) -> Table:
    table = Table(title="ledger (documents and tokens per source)")
    for col in ("source", "read", "repeated", "kept", "dropped", "split", "tokens kept", "packed", "tail"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for name, led in manifest["ledger"].items():
        d, t = led["docs"], led["tokens"]
        repeated = manifest.get("sources", {}).get(name, {}).get("docs_repeated", 0)
        table.add_row(name, f"{d['read']:,}", f"{repeated:,}", f"{d['kept']:,}", f"{sum(d['dropped'].values()):,}",
                      f"{d['split']:,}", f"{t['kept']:,}", f"{t['packed']:,}", f"{t['tail']:,}")
    return table


def render_table(manifest: dict[str, Any], console: Console) -> None:
    stats = stats_dict(manifest)
    console.print(mixture_table(stats))
    console.print(ledger_table(manifest))
    for source, why in stats["why"].items():
        console.print(f"[bold]{escape(source)}[/]: off target: {escape(why)}", highlight=False)
    pm = stats["premixed"]
    if pm:
        console.print(f"pre-mixed: {pm['path']}/ holds {pm['rows']:,} rows / {pm['tokens']:,} tokens interleaved "
                      "in exact proportions" + (f"; left out: {', '.join(pm['left_out'])}" if pm["left_out"] else ""),
                      highlight=False)


def streams_lines(manifest: dict[str, Any], out: Path) -> list[str]:
    """ProLong-style `path@proportion`, one per subset, with OUT prefixed (paste into ProLong's
    `domains=(...)` or `--tokenized_mds_train`)."""
    entries = manifest.get("prolong_streams") or [f"{s['path']}@{s['proportion']:.6g}" for s in manifest["streams"]]
    return [f"{out / e}" for e in entries]


def stats_command(out: Path, *, as_json: bool, report: Path | None, streams: bool, console: Console) -> None:
    """`mixcraft stats`: one build, or each stage of a curriculum in training order."""
    from mixcraft.build.curriculum import load_curriculum

    curriculum = load_curriculum(out)
    if curriculum is not None and not (out / "manifest.json").is_file():
        stages = [(st["name"], out / st["path"]) for st in curriculum["stages"]]
    else:
        stages = [(None, out)]
    manifests = [(name, path, load_manifest(path)) for name, path in stages]
    if streams:
        for _, path, m in manifests:
            print("\n".join(streams_lines(m, path)))
    elif as_json:
        data = [{**({"stage": name} if name else {}), **stats_dict(m)} for name, _, m in manifests]
        print(json.dumps(data[0] if len(stages) == 1 and stages[0][0] is None else {"stages": data}, indent=1))
    else:
        for name, _, m in manifests:
            if name:
                console.print(f"[bold]stage {name}[/]")
            render_table(m, console)
    if report is not None:
        from mixcraft.report.plots import write_report

        notes = Console(stderr=True)  # stdout may be JSON or stream lines for a script
        for name, _, m in manifests:
            written = write_report(m, report / name if name else report)
            notes.print(f"wrote {', '.join(str(p) for p in written)}", highlight=False, soft_wrap=True)
