"""`drop_reasons.png`: what each source lost, by reason, from its ledger.

Left, documents; right, their tokens (at the stage that dropped them: characters are not
tokens yet before tokenization, so a text filter's drops count 0 tokens there). One bar per
source, split by reason; a reason keeps its colour in both panels. The nine most common reasons
get their own colour and the rest share grey, so a recipe with many quality filters stays
readable. Each bar ends with the share of what the source read.
"""

from __future__ import annotations

from pathlib import Path

from mixcraft.core.fmt import human
from mixcraft.core.manifest import Manifest
from mixcraft.report.plotkit import pyplot, save

TOP_REASONS = 9
OTHER = "other reasons"


def reason_colours(manifest: Manifest) -> dict[str, str]:
    """The TOP_REASONS most common reasons (by documents, over all sources) with a colour each."""
    totals: dict[str, int] = {}
    for led in manifest.ledger.values():
        for reason, n in led.docs.dropped.items():
            totals[reason] = totals.get(reason, 0) + n
    ranked = sorted((r for r, n in totals.items() if n), key=lambda r: (-totals[r], r))
    return {r: f"C{k}" for k, r in enumerate(ranked[:TOP_REASONS])} | ({OTHER: "0.6"} if ranked[TOP_REASONS:] else {})


def _by_colour(dropped: dict[str, int], colours: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for reason, n in dropped.items():
        key = reason if reason in colours else OTHER
        out[key] = out.get(key, 0) + n
    return out


def _panel(ax, names: list[str], counts: list[dict[str, int]], read: list[int], colours: dict[str, str],
           unit: str) -> None:
    ys = list(range(len(names)))[::-1]
    starts = [0] * len(names)
    for reason, colour in colours.items():
        widths = [c.get(reason, 0) for c in counts]
        ax.barh(ys, widths, left=starts, color=colour, height=0.6, label=reason)
        starts = [a + w for a, w in zip(starts, widths, strict=True)]
    top = max(starts + [1])
    for y, total, of in zip(ys, starts, read, strict=True):
        share = f" ({100 * total / of:.1f}% of {human(of)})" if of else ""
        ax.text(total + top * 0.01, y, f"{total:,}{share}", va="center", fontsize=7)
    ax.set_yticks(ys, names, fontsize=8)
    ax.set_xlim(0, top * 1.45)
    ax.set_xlabel(f"{unit} dropped" + (" (counted once tokenized: earlier drops show 0)" if unit == "tokens" else ""),
                  fontsize=9)
    ax.tick_params(labelsize=8)


def plot_drop_reasons(manifest: Manifest, path: Path) -> None:
    plt = pyplot()
    names = list(manifest.ledger)
    colours = reason_colours(manifest)
    fig, (docs_ax, tokens_ax) = plt.subplots(1, 2, figsize=(12, 0.45 * len(names) + 2.6))
    docs = [_by_colour(manifest.ledger[n].docs.dropped, colours) for n in names]
    tokens = [_by_colour(manifest.ledger[n].tokens.dropped, colours) for n in names]
    _panel(docs_ax, names, docs, [manifest.ledger[n].docs.read for n in names], colours, "documents")
    _panel(tokens_ax, names, tokens, [0] * len(names), colours, "tokens")
    legend_rows = -(-len(colours) // 5)
    bottom = (0.3 * legend_rows + 0.2) / fig.get_figheight() if colours else 0.0
    if colours:
        fig.legend(*docs_ax.get_legend_handles_labels(), loc="lower center", ncols=min(5, len(colours)), fontsize=8,
                   frameon=False)
    else:
        docs_ax.text(0.5, 0.5, "no document was dropped", transform=docs_ax.transAxes, ha="center", color="0.4")
    save(plt, fig, path, f"{manifest.recipe.name}: documents and tokens dropped, by reason", bottom=bottom)
