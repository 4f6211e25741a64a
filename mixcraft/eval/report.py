"""`mixcraft eval --report DIR`: PNG plots and one self-contained HTML page, in the style of
`mixcraft stats --report` (its plotting helpers, formatters and page style are reused; the page
is rendered from templates/eval.html.j2 with autoescaping).

    DIR/position_loss.png  mean loss by position in the document, one curve per source
    DIR/tasks.png          accuracy per context length x needle depth, one heatmap per task
    DIR/report.html        the tables and both plots embedded as base64
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import jinja2

from mixcraft.core import fmt
from mixcraft.report.html import Plot
from mixcraft.report.plots import _pyplot, _save

PLOTS = {"position_loss.png": "Loss by position in the document", "tasks.png": "Accuracy by length and depth"}
_ENV = jinja2.Environment(loader=jinja2.PackageLoader("mixcraft.eval", "templates"),
                          autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)


def plot_position_loss(result: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    pos = result["position_loss"]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    edges = pos["edges"]
    for k, (name, src) in enumerate(pos["sources"].items()):
        xs = [(a + b) / 2 for a, b, v in zip(edges, edges[1:], src["loss"], strict=False) if v is not None]
        ys = [v for v in src["loss"] if v is not None]
        ax.plot(xs, ys, marker="o", color=f"C{k % 10}", label=name)
    if pos["sources"]:
        ax.set_xscale("log", base=2)
        ax.set_xticks([(a + b) / 2 for a, b in zip(edges, edges[1:], strict=False)], pos["labels"], fontsize=8)
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, pos.get("note", "no data"), transform=ax.transAxes, ha="center", color="0.4")
    ax.set_xlabel("position of the predicted token in its document (tokens)", fontsize=9)
    ax.set_ylabel("mean loss (nats / token)", fontsize=9)
    ax.grid(alpha=0.3)
    _save(plt, fig, path, f"{result['meta']['checkpoint']}: loss by position ({result['validation'].get('split') or 'no data'})")


def plot_tasks(result: dict[str, Any], path: Path) -> None:
    """One heatmap per synthetic task: rows are context lengths, columns needle depths."""
    plt = _pyplot()
    tasks = {n: t for n, t in result["tasks"].items() if t["kind"] == "synthetic"}
    n_lengths = len(result["meta"]["lengths"])
    ncols = min(3, max(len(tasks), 1))
    nrows = -(-max(len(tasks), 1) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.3 * ncols, (1.3 + 0.45 * n_lengths) * nrows + 0.8),
                             squeeze=False, layout="constrained")
    axes = list(axes.flat)
    image = None
    for ax, (name, task) in zip(axes, tasks.items(), strict=False):
        lengths = sorted({c["length"] for c in task["cells"]})
        depths = sorted({c["depth"] for c in task["cells"]}, key=lambda d: -1 if d is None else d)
        grid = [[next(c["accuracy"] for c in task["cells"] if c["length"] == n and c["depth"] == d)
                 for d in depths] for n in lengths]
        image = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto", origin="lower")
        for i, row in enumerate(grid):
            for j, acc in enumerate(row):
                ax.text(j, i, f"{acc:.0%}", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(depths)), ["-" if d is None else f"{d:.0%}" for d in depths], fontsize=7)
        ax.set_yticks(range(len(lengths)), [fmt.tokens_label(n) for n in lengths], fontsize=7)
        ax.set_xlabel("needle depth" if depths != [None] else "(no needle)", fontsize=8)
        ax.set_ylabel("context length", fontsize=8)
        ax.set_title(f"{name}: {task['accuracy']:.0%} of {task['n']}", fontsize=9)
    for ax in axes[len(tasks):]:
        ax.axis("off")
    if image is None:
        axes[0].text(0.5, 0.5, "no synthetic task run", transform=axes[0].transAxes, ha="center", color="0.4")
    else:
        fig.colorbar(image, ax=axes, shrink=0.9, label="accuracy")
    fig.suptitle(f"{result['meta']['checkpoint']}: accuracy by "
                 "context length and needle depth (greedy answer, exact)", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write the PNGs and report.html into `out_dir`; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_position_loss(result, out_dir / "position_loss.png")
    plot_tasks(result, out_dir / "tasks.png")
    plots = [Plot(title, base64.b64encode((out_dir / name).read_bytes()).decode()) for name, title in PLOTS.items()]
    page = out_dir / "report.html"
    page.write_text(_ENV.get_template("eval.html.j2").render(
        title=f"mixcraft eval: {result['meta']['checkpoint']}", r=result, fmt=fmt, plots=plots), encoding="utf-8")
    return [out_dir / name for name in PLOTS] + [page]


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def summary_lines(result: dict[str, Any]) -> list[str]:
    """What `mixcraft eval` prints: one line per source and per task."""
    lines = []
    val = result["validation"]
    if val["sources"]:
        lines.append(f"validation ({val['split']}): " + ", ".join(
            f"{n} {_fmt(s['loss'])}" for n, s in val["sources"].items()))
    else:
        lines.append(f"validation: {val['note']}")
    for name, t in result["tasks"].items():
        if t["kind"] == "synthetic":
            per = ", ".join(f"{fmt.tokens_label(int(n))} {a:.0%}" for n, a in t["by_length"].items())
            lines.append(f"{name}: {t['accuracy']:.0%} ({per})")
        else:
            lines.append(f"{name}: exact match {t['exact_match']:.0%}, substring {t['substring_match']:.0%} "
                         f"(n={t['n']})")
    return lines
