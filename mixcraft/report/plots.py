"""`mixcraft stats OUT --report DIR`: PNG plots and one self-contained HTML page.

    DIR/mixture.png        target vs actual share per source, deviation in percentage points
    DIR/drop_reasons.png   documents and tokens each source dropped, by reason (plot_drops.py)
    DIR/doc_lengths.png    document lengths per source (log x): kept documents per bucket, the
                           documents offered to the buckets as an outline, bucket minimums dashed
    DIR/row_pieces.png     document pieces per row per subset, and fill per row where rows are
                           not full (plot_rows.py)
    DIR/report.html        the tables, the reasons for deviations, and the plots embedded as
                           base64 in the sections they illustrate, so the one file can be mailed
                           or attached to a run
"""

from __future__ import annotations

import base64
from pathlib import Path

from mixcraft.core.manifest import Histogram, Manifest
from mixcraft.report.html import Plot, render_html
from mixcraft.report.plot_drops import plot_drop_reasons
from mixcraft.report.plot_rows import plot_row_pieces
from mixcraft.report.plotkit import (
    PLOT_BINS_PER_OCTAVE,
    bars,
    grid,
    legend_or_note,
    log_length_axis,
    pyplot,
    save,
    tokens_tick,
)
from mixcraft.report.rows import Summary
from mixcraft.report.summary import summarize

# file -> (the section of the page it illustrates, where templates/report.html.j2 places it; its title)
PLOTS = {"mixture.png": ("mixture", "Target vs actual share of packed tokens, per source"),
         "drop_reasons.png": ("ledger", "Documents and tokens dropped, by reason, per source"),
         "doc_lengths.png": ("lengths", "Document lengths per source and bucket"),
         "row_pieces.png": ("rows", "Document pieces per row, and fill where rows are padded")}
_pyplot, _save = pyplot, save  # eval/report.py draws its plots with these


def _outline(hist: Histogram) -> tuple[list[float], list[float]]:
    """(values, edges) for `ax.stairs`, dropping to zero across empty bins."""
    edges: list[float] = []
    values: list[float] = []
    for lo, width, count in zip(*bars(hist), strict=True):
        if edges and abs(edges[-1] - lo) > 1e-6 * lo:
            values.append(0)
            edges.append(lo)
        elif not edges:
            edges.append(lo)
        values.append(count)
        edges.append(lo + width)
    return values, edges


def plot_doc_lengths(manifest: Manifest, path: Path) -> None:
    plt = pyplot()
    names = list(manifest.ledger)
    fig, axes = grid(plt, len(names), 5.2, 3.4)
    for ax, name in zip(axes, names, strict=True):
        lows, highs = [], []
        for k, s in enumerate(manifest.source_streams(name)):
            x, w, c = bars(s.doc_lengths)
            ax.bar(x, c, width=w, align="edge", alpha=0.7, color=f"C{k}", label=f"kept, bucket {s.bucket}")
            lows, highs = lows + x, highs + [a + b for a, b in zip(x, w, strict=True)]
        values, edges = _outline(manifest.sources[name].seen_lengths)
        if values:
            ax.stairs(values, edges, color="black", lw=1.2, label="offered to the buckets", zorder=3)
            lows, highs = lows + edges[:1], highs + edges[-1:]
        for m in manifest.sources[name].bucket_min_tokens.values():
            if m:
                ax.axvline(m, color="C3", ls="--", lw=1, label=f"bucket minimum {tokens_tick(m)}")
                lows, highs = lows + [m], highs + [m]
        log_length_axis(ax, lows, highs, "document length (tokens, log scale)")
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("documents", fontsize=8)
        ax.tick_params(labelsize=7)
        legend_or_note(ax, fontsize=7, loc="best")
    save(plt, fig, path, f"{manifest.recipe.name}: document lengths per source "
                          f"({PLOT_BINS_PER_OCTAVE} bins per doubling)")


def plot_mixture(stats: Summary, path: Path) -> None:
    """Horizontal bars: target (grey) above actual (colour) for each source."""
    plt = pyplot()
    rows = stats.sources
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(rows) + 1.6))
    ys = list(range(len(rows)))[::-1]
    height = 0.38
    ax.barh([y + height / 2 for y in ys], [100 * r.target for r in rows], height, color="0.75", label="target")
    ax.barh([y - height / 2 for y in ys], [100 * r.actual for r in rows], height,
            color=["C3" if abs(r.deviation_pp) > 1 else "C0" for r in rows], label="actual")
    top = max([100 * max(r.target, r.actual) for r in rows] or [1])
    for y, r in zip(ys, rows, strict=True):
        ax.text(100 * max(r.target, r.actual) + top * 0.01, y,
                f"{100 * r.actual:.1f}% ({r.deviation_pp:+.1f} pp)", va="center", fontsize=8)
    ax.set_yticks(ys, [r.source for r in rows], fontsize=9)
    ax.set_xlim(0, top * 1.3)
    ax.set_xlabel("share of packed tokens (%)", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    save(plt, fig, path, f"{stats.recipe.name}: target vs actual mixture (red: off by > 1 pp)")


def write_report(manifest: Manifest, out_dir: Path) -> list[Path]:
    """Write the PNGs and report.html into `out_dir`; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = summarize(manifest)
    plot_mixture(stats, out_dir / "mixture.png")
    plot_drop_reasons(manifest, out_dir / "drop_reasons.png")
    plot_doc_lengths(manifest, out_dir / "doc_lengths.png")
    plot_row_pieces(manifest, out_dir / "row_pieces.png")
    plots = {section: Plot(title, base64.b64encode((out_dir / name).read_bytes()).decode())
             for name, (section, title) in PLOTS.items()}
    page = out_dir / "report.html"
    page.write_text(render_html(stats, plots), encoding="utf-8")
    return [out_dir / name for name in PLOTS] + [page]
