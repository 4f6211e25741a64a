"""Packing: tokenized documents -> fixed-length rows with document spans. Pure: no I/O.

Every packer reports each document's fate exactly once to an `Account` (kept with its packed
and tail tokens, or dropped with a reason), so the ledger's invariants hold by construction.

`indices` spans follow ProLong: half-open [start, end) token ranges of each document piece in
the row, sorted, contiguous, starting at 0 and ending at the row's length.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class TokDoc:
    doc_id: str
    ids: np.ndarray  # uint32
    mask: np.ndarray | None = None  # uint8; 1 = counts in the loss (chat data)


@dataclass
class Row:
    input_ids: np.ndarray  # uint32
    spans: np.ndarray  # (n, 2) uint32
    mask: np.ndarray | None = None
    doc_ids: tuple[str, ...] = ()


class Account(Protocol):
    def kept(self, doc: TokDoc, *, packed: int, tail: int, split: bool) -> None: ...

    def dropped(self, doc: TokDoc, reason: str, tokens: int) -> None: ...


@dataclass
class _Open:
    """A document with tokens not yet placed in a row."""

    doc: TokDoc
    start: int = 0
    pieces: int = 0
    usable: int = -1  # tokens of the document that may be packed (a budget can cap it)

    def __post_init__(self) -> None:
        if self.usable < 0:
            self.usable = len(self.doc.ids)

    @property
    def left(self) -> int:
        return self.usable - self.start

    @property
    def tail(self) -> int:
        return len(self.doc.ids) - self.start


def _make_row(parts: list[tuple[TokDoc, int, int]], with_mask: bool) -> Row:
    ids = np.concatenate([d.ids[a:b] for d, a, b in parts]).astype(np.uint32, copy=False)
    lengths = np.asarray([b - a for _, a, b in parts], dtype=np.int64)
    ends = np.cumsum(lengths)
    spans = np.stack([ends - lengths, ends], axis=1).astype(np.uint32)
    mask = None
    if with_mask:
        mask = np.concatenate([
            d.mask[a:b] if d.mask is not None else np.ones(b - a, dtype=np.uint8) for d, a, b in parts
        ]).astype(np.uint8, copy=False)
    return Row(ids, spans, mask, tuple(d.doc_id for d, _, _ in parts))


def _close_leftovers(pending: list[_Open], acct: Account) -> None:
    """Documents still open at the end: kept with a tail if part of them was packed, else
    dropped as `final_partial_row`. Never silent (datatools drops this buffer unannounced)."""
    for o in pending:
        if o.pieces:
            acct.kept(o.doc, packed=o.start, tail=o.tail, split=o.pieces > 1)
        else:
            acct.dropped(o.doc, "final_partial_row", len(o.doc.ids))


class GreedyPacker:
    """ProLong/datatools packing: concatenate documents and cut every `seq_len` tokens; a
    document's remainder continues at the start of the next row. At `finish` the final
    partial row is dropped and counted, or emitted shorter than `seq_len` with `keep_last`."""

    def __init__(self, seq_len: int, acct: Account, *, with_mask: bool = False, keep_last: bool = False):
        self.seq_len, self.acct, self.with_mask, self.keep_last = seq_len, acct, with_mask, keep_last
        self.pending: list[_Open] = []
        self.fill = 0

    def add(self, doc: TokDoc, max_tokens: float | None = None) -> Iterator[Row]:
        """`max_tokens` caps what this document may add (a token budget's remainder, rounded
        up to finish the row); the rest of it is counted as its tail."""
        usable = len(doc.ids)
        if max_tokens is not None:
            rows_needed = -(-(self.fill + int(max_tokens)) // self.seq_len)
            usable = max(1, min(usable, rows_needed * self.seq_len - self.fill))
        self.pending.append(_Open(doc, usable=usable))
        self.fill += usable
        while self.fill >= self.seq_len:
            yield self._cut(self.seq_len)
            self.fill -= self.seq_len

    def finish(self) -> Iterator[Row]:
        if self.keep_last and self.fill:
            yield self._cut(self.fill)
            self.fill = 0
        _close_leftovers(self.pending, self.acct)
        self.pending = []

    def _cut(self, n: int) -> Row:
        parts, need = [], n
        while need:
            o = self.pending[0]
            take = min(o.left, need)
            parts.append((o.doc, o.start, o.start + take))
            o.start += take
            o.pieces += 1
            need -= take
            if not o.left:
                self.pending.pop(0)
                self.acct.kept(o.doc, packed=o.usable, tail=o.tail, split=o.pieces > 1)
        return _make_row(parts, self.with_mask)


class ChunkPacker:
    """ProLong's `--split_by_lengths` for long-document buckets: cut each document into
    `chunk_tokens` chunks (its tail < chunk_tokens is counted, not packed) and put
    `seq_len // chunk_tokens` chunks in a row (eight 64K chunks in a 512K row for stage 2)."""

    def __init__(self, chunk_tokens: int, seq_len: int, acct: Account, *, with_mask: bool = False):
        self.chunk, self.per_row, self.acct, self.with_mask = chunk_tokens, seq_len // chunk_tokens, acct, with_mask
        self.pending: list[tuple[_Open, int]] = []  # (document, chunk start)

    def add(self, doc: TokDoc, max_tokens: float | None = None) -> Iterator[Row]:
        """`max_tokens` caps what this document may add (a token budget's remainder); chunks
        past it are counted with the document's tail."""
        n_chunks = len(doc.ids) // self.chunk
        if max_tokens is not None:
            n_chunks = min(n_chunks, max(1, -(-int(max_tokens) // self.chunk)))
        if n_chunks == 0:
            self.acct.dropped(doc, "shorter_than_chunk", len(doc.ids))
            return
        o = _Open(doc, usable=n_chunks * self.chunk)
        for c in range(n_chunks):
            self.pending.append((o, c * self.chunk))
            if len(self.pending) == self.per_row:
                yield self._emit()

    def finish(self) -> Iterator[Row]:
        leftovers = {id(o): o for o, _ in self.pending}
        _close_leftovers(list(leftovers.values()), self.acct)
        self.pending = []
        yield from ()

    def _emit(self) -> Row:
        parts = []
        for o, start in self.pending:
            parts.append((o.doc, start, start + self.chunk))
            o.start = start + self.chunk
            o.pieces += 1
            if o.start == o.usable:
                self.acct.kept(o.doc, packed=o.usable, tail=len(o.doc.ids) - o.usable, split=o.pieces > 1)
        self.pending = []
        return _make_row(parts, self.with_mask)


def pack_all(packer, docs: Iterable[TokDoc]) -> Iterator[Row]:
    """Run a packer over a whole document stream."""
    for doc in docs:
        yield from packer.add(doc)
    yield from packer.finish()


def check_row(row: Row, seq_len: int | None = None) -> list[str]:
    """Span invariants of one row, as messages (empty when the row is well formed)."""
    faults = []
    spans = row.spans.reshape(-1, 2).astype(np.int64)
    n = len(row.input_ids)
    if seq_len is not None and n != seq_len:
        faults.append(f"length {n} != seq_len {seq_len}")
    if len(spans) == 0:
        return faults + ["no spans"]
    if spans[0, 0] != 0:
        faults.append(f"first span starts at {spans[0, 0]}, not 0")
    if spans[-1, 1] != n:
        faults.append(f"last span ends at {spans[-1, 1]}, not at the row length {n}")
    if (spans[:, 1] <= spans[:, 0]).any():
        faults.append("an empty or reversed span")
    if (spans[1:, 0] != spans[:-1, 1]).any():
        faults.append("spans are not contiguous")
    if row.mask is not None and len(row.mask) != n:
        faults.append(f"mask length {len(row.mask)} != {n}")
    return faults
