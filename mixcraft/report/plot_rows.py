"""`row_pieces.png`: how rows are packed, per subset.

Right (or alone): the share of rows holding at most x document pieces, one step line per
subset. Subsets packed alike give the same line (every chunk bucket is one piece a row), so each
line is drawn a little to the side of the others (a fixed fraction of an octave per subset),
with its own colour, dash and marker: none hides under another.

Left, only when some subset has rows that are not full (best-fit padding): each such subset's
rows by fill (tokens / seq_len). ProLong's packing fills every row to the last token, so there a
fill panel would be one green bar per subset and is left out.
"""

from __future__ import annotations

from pathlib import Path

from mixcraft.core.lengths import BINS_PER_OCTAVE
from mixcraft.core.manifest import Manifest, Stream
from mixcraft.report.plotkit import bars, line_style, log_length_axis, pyplot, save

FILL_BANDS = ((100, 101, "full (100%)", "#2a9d3f"), (90, 100, "90-99%", "#9ccc65"),
              (50, 90, "50-89%", "#f9a825"), (0, 50, "under 50%", "#d62728"))
SHIFT_OCTAVES = 0.035  # between neighbouring lines: 10 subsets span a third of an octave (1 to 1.27 pieces)


def not_full(s: Stream) -> bool:
    return any(int(p) < 100 and c for p, c in s.row_fill_pct.items())


def _fill_panel(ax, streams: list[Stream]) -> None:
    ys = list(range(len(streams)))[::-1]
    starts = [0.0] * len(streams)
    for lo, hi, label, color in FILL_BANDS:
        widths = [100 * sum(c for p, c in s.row_fill_pct.items() if lo <= int(p) < hi) / s.rows for s in streams]
        ax.barh(ys, widths, left=starts, color=color, label=label, height=0.6)
        starts = [a + w for a, w in zip(starts, widths, strict=True)]
    ax.set_yticks(ys, [s.path for s in streams], fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_ylim(-0.8, len(streams) - 0.2)  # bars keep their height however few subsets there are
    ax.set_xlabel("rows (%), by fill = tokens / seq_len (padding excluded)", fontsize=9)
    ax.set_title("subsets with rows not full (padding)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", ncols=4, bbox_to_anchor=(0, -0.15))


def _pieces_panel(ax, streams: list[Stream]) -> None:
    from matplotlib.ticker import MultipleLocator

    lows, highs = [], []
    for k, s in enumerate(streams):
        x, w, c = bars(s.row_pieces, BINS_PER_OCTAVE)  # full resolution: small integers
        if not c:
            continue
        total = sum(c)
        cum = [sum(c[: i + 1]) / total for i in range(len(c))]
        shift = 2 ** (SHIFT_OCTAVES * (k - (len(streams) - 1) / 2))
        xs = [v * shift for v in [x[0] / 1.2, *x]]
        ax.step(xs, [0, *cum], where="post", lw=1.4, label=s.path, markevery=list(range(1, len(xs))), ms=5,
                mfc="none", zorder=3 + len(streams) - k, **line_style(k))
        lows, highs = lows + x[:1], highs + [x[-1] + w[-1]]
    log_length_axis(ax, lows, highs, "document pieces per row (log scale)")
    ax.set_ylabel("share of rows with at most x pieces", fontsize=9)
    ax.set_ylim(0, 1.04)
    ax.yaxis.set_major_locator(MultipleLocator(0.2))  # a share, not a count
    ax.set_title("document pieces per row (each line shifted slightly so none hides)", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="lower right")


def plot_row_pieces(manifest: Manifest, path: Path) -> None:
    plt = pyplot()
    streams = [s for s in manifest.streams if s.rows]
    padded = [s for s in streams if not_full(s)]
    ncols = 2 if padded else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, max(3.8, 0.4 * len(padded) + 2.6)), squeeze=False)
    if padded:
        _fill_panel(axes[0][0], padded)
    _pieces_panel(axes[0][-1], streams)
    for ax in axes[0]:
        ax.tick_params(labelsize=8)
    save(plt, fig, path, f"{manifest.recipe.name}: how rows are packed ({manifest.seq_len:,}-token rows)")
