"""`mixcraft inspect`: one packed row, decoded piece by piece with its span.

A piece is one document's tokens in the row, so every boundary between two pieces is a
document boundary (where the trainer resets attention and masks the first label). A map line
draws the pieces to scale; each panel gives the span, the token count, the first and last
characters, and for chat rows which tokens count in the loss.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

from mixcraft.core.manifest import Manifest, read_manifest
from mixcraft.core.outdir import PREMIX_DIR
from mixcraft.core.tokenize import load_tokenizer
from mixcraft.errors import UserError
from mixcraft.mds import read_row


def _pick_stream(m: Manifest, source: str | None, bucket: str | None) -> str:
    """The subset path to show: the source's (first) bucket, or the pre-mixed stream."""
    if source == PREMIX_DIR and m.premixed is not None:
        return m.premixed.path
    streams = m.streams
    if source is not None:
        streams = m.source_streams(source)
        if not streams:
            have = sorted({s.source for s in m.streams})
            raise UserError(f"--source {source!r}: no such source in this build (have: {', '.join(have)})")
    if bucket is not None:
        picked = [s for s in streams if s.bucket == bucket]
        if not picked:
            raise UserError(f"--bucket {bucket!r}: not a bucket of {streams[0].source} "
                            f"(have: {', '.join(s.bucket for s in streams)})")
        streams = picked
    return streams[0].path


def _shorten(text: str, chars: int) -> str:
    """Rich markup for `text`, its middle cut out when long."""
    if len(text) <= 2 * chars + 20:
        return escape(text)
    return f"{escape(text[:chars])}\n[dim]... {len(text) - 2 * chars:,} characters ...[/]\n{escape(text[-chars:])}"


def show_row(out: Path, *, source: str | None, bucket: str | None, row: int, chars: int, console: Console) -> None:
    manifest = read_manifest(out)
    path = _pick_stream(manifest, source, bucket)
    r = read_row(out / path, row)
    tok = load_tokenizer(manifest.tokenizer.file or manifest.tokenizer.name)
    ids = np.asarray(r["input_ids"])
    mask = np.asarray(r["mask"]) if "mask" in r else None
    spans = r["indices"]
    console.print(f"[bold]{path}[/] row {row}: {len(ids):,} tokens, {len(spans)} pieces "
                  f"({max(len(spans) - 1, 0)} document boundaries), domain {r['domain']}", highlight=False)
    console.print(boundary_map(spans.tolist(), len(ids)))
    for k, (a, b) in enumerate(spans.tolist()):
        title = f"piece {k}  [{a:,}, {b:,})  {b - a:,} tokens"
        if mask is not None:
            title += f"  loss on {int(mask[a:b].sum()):,} tokens"
            body = _masked_text(tok, ids[a:b], mask[a:b], chars)
        else:
            body = _shorten(tok.decode(ids[a:b]), chars)
        console.print(Panel(body, title=title, title_align="left"))


def _masked_text(tok, ids: np.ndarray, mask: np.ndarray, chars: int) -> str:
    """Loss tokens in green, the rest dimmed; runs of equal mask decoded together."""
    parts, start = [], 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or mask[i] != mask[start]:
            text = _shorten(tok.decode(ids[start:i]), chars)
            parts.append(f"[green]{text}[/]" if mask[start] else f"[dim]{text}[/]")
            start = i
    return "".join(parts)


MAP_WIDTH = 100


def boundary_map(spans: list[list[int]], n_tokens: int, width: int = MAP_WIDTH) -> Text:
    """The row to scale, one cell per 1/`width` of it, pieces in alternating colours, each
    labelled with its number where it has room; `|` marks where a document boundary falls."""
    cells = [""] * width
    start = -1
    for k, (a, _) in enumerate(spans):
        # A piece thinner than a cell still gets one while there is room, so no boundary hides.
        start = min(max(a * width // max(n_tokens, 1), start + 1), width - 1)
        for c in range(start, width):
            cells[c] = str(k)
    text = Text("|")
    col = 0
    while col < width:
        k = cells[col]
        run = 1
        while col + run < width and cells[col + run] == k:
            run += 1
        label = k if len(k) <= run else ""
        text.append(label.center(run, "▁" if int(k or 0) % 2 else "▔"),
                    style="cyan" if int(k or 0) % 2 else "magenta")
        text.append("|")
        col += run
    return text
