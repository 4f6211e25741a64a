"""`mixcraft stats OUT --report DIR`: PNG plots and one self-contained HTML page.

    DIR/mixture.png       target vs actual share per source, deviation in percentage points
    DIR/doc_lengths.png   document lengths per source (log x): kept documents per bucket, the
                          documents offered to the buckets as an outline, bucket minimums dashed
    DIR/row_fill.png      fill per row (tokens / seq_len) and document pieces per row, per subset
    DIR/report.html       the tables, the reasons for deviations, and the three plots embedded
                          as base64, so the one file can be mailed or attached to a run
"""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any

from mixcraft.core.fmt import tokens_label
from mixcraft.core.lengths import BINS_PER_OCTAVE, bin_edges
from mixcraft.core.manifest import Histogram, Manifest
from mixcraft.report.html import Plot, render_html
from mixcraft.report.rows import Summary
from mixcraft.report.summary import summarize

PLOTS = {"mixture.png": "Target vs actual mixture", "doc_lengths.png": "Document lengths per source",
         "row_fill.png": "How full rows are, and how many documents they hold"}
DPI = 110
PLOT_BINS_PER_OCTAVE = 2  # the build's 8 bins per doubling, merged: readable bars at any corpus size


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display (servers, CI)
    import matplotlib.pyplot as plt

    return plt


def _bars(hist: Histogram, per_octave: int = PLOT_BINS_PER_OCTAVE) -> tuple[list[float], list[float], list[int]]:
    """Left edges, widths and counts of a length histogram's non-empty bins, merged to
    `per_octave` bins per doubling."""
    merge = BINS_PER_OCTAVE // per_octave
    counts: dict[int, int] = {}
    for b, c in hist.load().counts.items():
        counts[b // merge] = counts.get(b // merge, 0) + c
    bins = sorted(counts)
    edges = [(bin_edges(b * merge)[0], bin_edges(b * merge + merge - 1)[1]) for b in bins]
    return [lo for lo, _ in edges], [hi - lo for lo, hi in edges], [counts[b] for b in bins]


def _tokens_label(x: float, _pos: Any = None) -> str:
    return tokens_label(x)


def _log_length_axis(ax, lows: list[float], highs: list[float], label: str) -> None:
    """Log x with ticks at powers of two (1K, 4K, 64K, ...), spanning at least 16x so a narrow
    histogram does not become one bar across the whole plot."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    lo, hi = (min(lows), max(highs)) if lows else (1, 2)
    while hi / lo < 16:
        lo, hi = lo / 2, hi * 2
    ax.set_xscale("log", base=2)
    ax.set_xlim(max(lo / 1.5, 0.5), hi * 1.5)
    ax.xaxis.set_major_locator(LogLocator(base=2, numticks=9))
    ax.xaxis.set_major_formatter(FuncFormatter(_tokens_label))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(label, fontsize=8)


def _outline(hist: Histogram) -> tuple[list[float], list[float]]:
    """(values, edges) for `ax.stairs`, dropping to zero across empty bins."""
    edges: list[float] = []
    values: list[float] = []
    for lo, width, count in zip(*_bars(hist), strict=True):
        if edges and abs(edges[-1] - lo) > 1e-6 * lo:
            values.append(0)
            edges.append(lo)
        elif not edges:
            edges.append(lo)
        values.append(count)
        edges.append(lo + width)
    return values, edges


def _grid(plt, n: int, width: float, height: float):
    ncols = min(3, max(n, 1))
    nrows = math.ceil(max(n, 1) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, list(axes.flat)[:n]


def _legend(ax, **kwargs: Any) -> None:
    """A legend, or a note where there is nothing to show (a manifest from before mixcraft
    recorded lengths)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)
    else:
        ax.text(0.5, 0.5, "no data recorded", transform=ax.transAxes, ha="center", color="0.4")


def _save(plt, fig, path: Path, title: str) -> None:
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def plot_doc_lengths(manifest: Manifest, path: Path) -> None:
    plt = _pyplot()
    names = list(manifest.ledger)
    fig, axes = _grid(plt, len(names), 5.2, 3.4)
    for ax, name in zip(axes, names, strict=True):
        lows, highs = [], []
        for k, s in enumerate(manifest.source_streams(name)):
            x, w, c = _bars(s.doc_lengths)
            ax.bar(x, c, width=w, align="edge", alpha=0.7, color=f"C{k}", label=f"kept, bucket {s.bucket}")
            lows, highs = lows + x, highs + [a + b for a, b in zip(x, w, strict=True)]
        values, edges = _outline(manifest.sources[name].seen_lengths)
        if values:
            ax.stairs(values, edges, color="black", lw=1.2, label="offered to the buckets", zorder=3)
            lows, highs = lows + edges[:1], highs + edges[-1:]
        for m in manifest.sources[name].bucket_min_tokens.values():
            if m:
                ax.axvline(m, color="C3", ls="--", lw=1, label=f"bucket minimum {_tokens_label(m)}")
                lows, highs = lows + [m], highs + [m]
        _log_length_axis(ax, lows, highs, "document length (tokens, log scale)")
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("documents", fontsize=8)
        ax.tick_params(labelsize=7)
        _legend(ax, fontsize=7, loc="best")
    _save(plt, fig, path, f"{manifest.recipe.name}: document lengths per source "
                          f"({PLOT_BINS_PER_OCTAVE} bins per doubling)")


def plot_mixture(stats: Summary, path: Path) -> None:
    """Horizontal bars: target (grey) above actual (colour) for each source."""
    plt = _pyplot()
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
    _save(plt, fig, path, f"{stats.recipe.name}: target vs actual mixture (red: off by > 1 pp)")


FILL_BANDS = ((100, 101, "full (100%)", "#2a9d3f"), (90, 100, "90-99%", "#9ccc65"),
              (50, 90, "50-89%", "#f9a825"), (0, 50, "under 50%", "#d62728"))


def plot_row_fill(manifest: Manifest, path: Path) -> None:
    """Left: each subset's rows by fill band (tokens / seq_len); right: the cumulative share of
    rows by the number of document pieces they hold."""
    plt = _pyplot()
    streams = [s for s in manifest.streams if s.rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 0.45 * len(streams) + 2.4))
    ys = list(range(len(streams)))[::-1]
    starts = [0.0] * len(streams)
    for lo, hi, label, color in FILL_BANDS:
        widths = []
        for s in streams:
            fill = {int(p): c for p, c in s.row_fill_pct.items()}
            widths.append(100 * sum(c for p, c in fill.items() if lo <= p < hi) / s.rows)
        left.barh(ys, widths, left=starts, color=color, label=label, height=0.6)
        starts = [a + w for a, w in zip(starts, widths, strict=True)]
    left.set_yticks(ys, [s.path for s in streams], fontsize=8)
    left.set_xlim(0, 100)
    left.set_xlabel("rows (%), by fill = tokens / seq_len", fontsize=9)
    left.legend(fontsize=7, loc="lower left", ncols=4, bbox_to_anchor=(0, 1.0))
    lows, highs = [], []
    for k, s in enumerate(streams):
        x, w, c = _bars(s.row_pieces, BINS_PER_OCTAVE)  # full resolution: small integers
        if c:
            total = sum(c)
            cum = [sum(c[: i + 1]) / total for i in range(len(c))]
            right.step([x[0] / 1.2, *x], [0, *cum], where="post", color=f"C{k % 10}", lw=1.5, label=s.path)
            lows, highs = lows + x[:1], highs + [x[-1] + w[-1]]
    _log_length_axis(right, lows, highs, "document pieces per row (log scale)")
    right.set_ylabel("share of rows with at most x pieces", fontsize=9)
    right.set_ylim(0, 1.02)
    from matplotlib.ticker import MultipleLocator

    right.yaxis.set_major_locator(MultipleLocator(0.2))  # a share, not a count
    _legend(right, fontsize=7, loc="lower right")
    for ax in (left, right):
        ax.tick_params(labelsize=8)
    _save(plt, fig, path, f"{manifest.recipe.name}: fill per row and pieces per row "
                          f"({manifest.seq_len:,}-token rows)")


def write_report(manifest: Manifest, out_dir: Path) -> list[Path]:
    """Write the three PNGs and report.html into `out_dir`; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = summarize(manifest)
    plot_mixture(stats, out_dir / "mixture.png")
    plot_doc_lengths(manifest, out_dir / "doc_lengths.png")
    plot_row_fill(manifest, out_dir / "row_fill.png")
    plots = [Plot(title, base64.b64encode((out_dir / name).read_bytes()).decode()) for name, title in PLOTS.items()]
    page = out_dir / "report.html"
    page.write_text(render_html(stats, plots), encoding="utf-8")
    return [out_dir / name for name in PLOTS] + [page]
