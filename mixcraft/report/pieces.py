"""Where each piece of a packed row comes from, for `inspect`: its document (the doc_ids and
doc_offsets columns, mds.py), the tokens of it the piece holds, and whether the document goes on
in another row.

A piece starting past the document's token 0 continues from another row: from the previous row
when that row's last piece is the same document and ends where this one starts (checked by
reading it), else from an earlier row (a best-fit remainder waits for a row it fits). A piece
ending before the document's last token continues into the next row when that row's first piece
starts exactly there. Otherwise the rest is in a later row or was never packed; in a chunk
bucket, where every piece is one chunk, a rest shorter than a chunk is certainly the tail
(ProLong's --split_by_lengths drops it; the ledger counts it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.markup import escape

from mixcraft.core.pack import Row
from mixcraft.mds import SubsetReader, row_of


@dataclass
class RowContext:
    """Row `n` of a subset, with its neighbours read when first asked for."""

    reader: SubsetReader
    n: int
    chunked: bool = False  # a chunk bucket: every piece is one chunk of chunk_tokens
    _rows: dict[int, Row | None] = field(default_factory=dict)

    def get(self, n: int) -> Row | None:
        if n not in self._rows:
            self._rows[n] = row_of(self.reader.row(n)) if 0 <= n < len(self.reader) else None
        return self._rows[n]


def piece_end(row: Row, k: int) -> int:
    """Where piece k ends in its document."""
    a, b = row.spans[k].tolist()
    return row.doc_offsets[k][0] + b - a


def last_piece(row: Row) -> int:
    return len(row.spans) - (2 if row.padding else 1)


def continues_from(row: Row, k: int, ctx: RowContext) -> str | None:
    """Where the tokens before piece k of its document are, when it does not start the document."""
    doc, start = row.doc_ids[k], row.doc_offsets[k][0]
    if start == 0:
        return None
    if k > 0 and row.doc_ids[k - 1] == doc and piece_end(row, k - 1) == start:
        return f"continues piece {k - 1}"
    prev = ctx.get(ctx.n - 1)
    if k == 0 and prev is not None and prev.doc_ids and prev.doc_ids[last_piece(prev)] == doc \
            and piece_end(prev, last_piece(prev)) == start:
        return f"[cyan]↩ continues from row {ctx.n - 1}[/]"
    return f"[cyan]↩ continues from an earlier row[/] (its first {start:,} tokens are there)"


def continues_into(row: Row, k: int, ctx: RowContext) -> str | None:
    """Where the rest of piece k's document is, when the piece does not end it."""
    doc, n_tokens = row.doc_ids[k], row.doc_offsets[k][1]
    end = piece_end(row, k)
    if end >= n_tokens:
        return None
    if k + 1 < len(row.doc_ids) and row.doc_ids[k + 1] == doc and row.doc_offsets[k + 1][0] == end:
        return f"continued by piece {k + 1}"
    nxt = ctx.get(ctx.n + 1)
    if k == last_piece(row) and nxt is not None and nxt.doc_ids and nxt.doc_ids[0] == doc \
            and nxt.doc_offsets[0][0] == end:
        return f"[cyan]↪ continues into row {ctx.n + 1}[/]"
    rest = n_tokens - end
    a, b = row.spans[k].tolist()
    if ctx.chunked and rest < b - a:
        return f"its last {rest:,} tokens are its tail: shorter than a chunk, not packed (the ledger counts them)"
    return f"[cyan]↪ {rest:,} more tokens[/] not in the next row: in a later row, or a tail never packed"


def document_line(row: Row, k: int, ctx: RowContext) -> str:
    """Piece k's document, which of its tokens the piece holds, and where the rest of it is."""
    start, n_tokens = row.doc_offsets[k]
    end = piece_end(row, k)
    span = "the whole document" if start == 0 and end == n_tokens else \
        f"document tokens [{start:,}, {end:,}) of {n_tokens:,}"
    notes = [n for n in (continues_from(row, k, ctx), continues_into(row, k, ctx)) if n]
    return f"[bold]{escape(row.doc_ids[k])}[/]: {span}" + "".join(f"; {n}" for n in notes)
