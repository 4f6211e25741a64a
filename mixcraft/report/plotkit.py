"""What the report's plots share: matplotlib off-screen, length histograms as bars, a log2
token axis, styles that keep overlapping lines apart, saving at one resolution."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mixcraft.core.fmt import tokens_label
from mixcraft.core.lengths import BINS_PER_OCTAVE, bin_edges
from mixcraft.core.manifest import Histogram

DPI = 110
PLOT_BINS_PER_OCTAVE = 2  # the build's 8 bins per doubling, merged: readable bars at any corpus size
LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display (servers, CI)
    import matplotlib.pyplot as plt

    return plt


def line_style(k: int) -> dict[str, Any]:
    """Colour, line style and marker of the k-th line: no two of ten lines share all three, so
    lines that coincide still show apart in the legend and where their markers fall."""
    return {"color": f"C{k % 10}", "ls": LINESTYLES[k % len(LINESTYLES)], "marker": MARKERS[k % len(MARKERS)]}


def bars(hist: Histogram, per_octave: int = PLOT_BINS_PER_OCTAVE) -> tuple[list[float], list[float], list[int]]:
    """Left edges, widths and counts of a length histogram's non-empty bins, merged to
    `per_octave` bins per doubling."""
    merge = BINS_PER_OCTAVE // per_octave
    counts: dict[int, int] = {}
    for b, c in hist.load().counts.items():
        counts[b // merge] = counts.get(b // merge, 0) + c
    keys = sorted(counts)
    edges = [(bin_edges(b * merge)[0], bin_edges(b * merge + merge - 1)[1]) for b in keys]
    return [lo for lo, _ in edges], [hi - lo for lo, hi in edges], [counts[b] for b in keys]


def tokens_tick(x: float, _pos: Any = None) -> str:
    return tokens_label(x)


def log_length_axis(ax, lows: list[float], highs: list[float], label: str) -> None:
    """Log x with ticks at powers of two (1K, 4K, 64K, ...), spanning at least 16x so a narrow
    histogram does not become one bar across the whole plot."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    lo, hi = (min(lows), max(highs)) if lows else (1, 2)
    while hi / lo < 16:
        lo, hi = lo / 2, hi * 2
    ax.set_xscale("log", base=2)
    ax.set_xlim(max(lo / 1.5, 0.5), hi * 1.5)
    ax.xaxis.set_major_locator(LogLocator(base=2, numticks=9))
    ax.xaxis.set_major_formatter(FuncFormatter(tokens_tick))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(label, fontsize=8)


def grid(plt, n: int, width: float, height: float, ncols_max: int = 3):
    ncols = min(ncols_max, max(n, 1))
    nrows = math.ceil(max(n, 1) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, list(axes.flat)[:n]


def legend_or_note(ax, note: str = "no data recorded", **kwargs: Any) -> None:
    """A legend, or `note` where there is nothing to show (a manifest from before mixcraft
    recorded lengths)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)
    else:
        ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", color="0.4")


def save(plt, fig, path: Path, title: str, *, bottom: float = 0.0) -> None:
    """`bottom`: the share of the figure's height kept free below the axes (a figure legend)."""
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
