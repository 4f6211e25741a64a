"""`mixcraft inspect`: one packed row, decoded piece by piece with its span.

A piece is one document's tokens in the row, so every boundary between two pieces is a
document boundary (where the trainer resets attention and masks the first label). A map line
draws the pieces to scale; each panel gives the span, the token count, the first and last
characters, and for chat rows which tokens count in the loss. Padding (best-fit rows) is its own
panel, not a piece.

With the `doc_ids`/`doc_offsets` columns each panel names its document, the tokens of it the
piece holds, and whether the document goes on in another row (report/pieces.py says how it knows).
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
from mixcraft.mds import SubsetReader, row_of
from mixcraft.report.pieces import RowContext, document_line


def _pick_stream(m: Manifest, source: str | None, bucket: str | None) -> tuple[str, bool]:
    """The subset path to show (the source's first bucket, or the pre-mixed stream), and whether
    it is a chunk bucket (every piece one chunk; ProLong's --split_by_lengths)."""
    if source == PREMIX_DIR and m.premixed is not None:
        return m.premixed.path, False
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
    s = streams[0]
    return s.path, m.sources[s.source].bucket_min_tokens.get(s.bucket, 0) > 0 and s.packing != "concat_chunk"


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def _shorten(text: str, chars: int) -> str:
    """Rich markup for `text`, its middle cut out when long."""
    if len(text) <= 2 * chars + 20:
        return escape(text)
    return f"{escape(text[:chars])}\n[dim]... {len(text) - 2 * chars:,} characters ...[/]\n{escape(text[-chars:])}"


def show_row(out: Path, *, source: str | None, bucket: str | None, row: int, chars: int, console: Console) -> None:
    manifest = read_manifest(out)
    path, chunked = _pick_stream(manifest, source, bucket)
    rows = RowContext(SubsetReader(out / path), row, chunked=chunked)
    sample = rows.reader.row(row)
    r = row_of(sample)
    tok = load_tokenizer(manifest.tokenizer.file or manifest.tokenizer.name)
    spans = r.spans.tolist()
    pieces = len(spans) - (1 if r.padding else 0)
    what = _count(pieces, "piece") + (f" and {_count(r.padding, 'padding token')}" if r.padding else "")
    console.print(f"[bold]{path}[/] row {row}: {len(r.input_ids):,} tokens, {what} "
                  f"({_count(max(pieces - 1, 0), 'document boundary', 'document boundaries')}), "
                  f"domain {sample['domain']}", highlight=False)
    if not r.doc_ids:
        console.print("[dim]documents not recorded: built with output.doc_ids false (or by an older mixcraft)[/]")
    # One cell per 1/width of the row, plus a bar per boundary: within the console (80 columns too).
    console.print(boundary_map(spans, len(r.input_ids), pieces, max(10, min(MAP_WIDTH, console.width - len(spans) - 2))))
    for k, (a, b) in enumerate(spans):
        if k == pieces:
            console.print(Panel(f"[dim]{b - a:,} copies of token {int(r.input_ids[a])}; no loss on them (mask 0)[/]",
                                title=f"padding  [{a:,}, {b:,})  {b - a:,} tokens", title_align="left"))
            continue
        title = f"piece {k}  [{a:,}, {b:,})  {b - a:,} tokens"
        if r.mask is not None:
            title += f"  loss on {int(r.mask[a:b].sum()):,} tokens"
            body = _masked_text(tok, r.input_ids[a:b], r.mask[a:b], chars)
        else:
            body = _shorten(tok.decode(r.input_ids[a:b]), chars)
        if r.doc_ids:
            body = f"{document_line(r, k, rows)}\n{body}"
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


def boundary_map(spans: list[list[int]], n_tokens: int, pieces: int | None = None, width: int = MAP_WIDTH) -> Text:
    """The row to scale, one cell per 1/`width` of it, pieces in alternating colours, each
    labelled with its number where it has room (spans past `pieces` are padding, drawn `░`);
    `|` marks where a document boundary falls."""
    pieces = len(spans) if pieces is None else pieces
    cells = [0] * width
    start = -1
    for k, (a, _) in enumerate(spans):
        # A piece thinner than a cell still gets one while there is room, so no boundary hides.
        start = min(max(a * width // max(n_tokens, 1), start + 1), width - 1)
        for c in range(start, width):
            cells[c] = k
    text = Text("|")
    col = 0
    while col < width:
        k = cells[col]
        run = 1
        while col + run < width and cells[col + run] == k:
            run += 1
        if k >= pieces:
            text.append(("pad" if run >= 3 else "").center(run, "░"), style="dim")
        else:
            label = str(k) if len(str(k)) <= run else ""
            text.append(label.center(run, "▁" if k % 2 else "▔"), style="cyan" if k % 2 else "magenta")
        text.append("|")
        col += run
    return text
