"""Packing: tokenized documents -> fixed-length rows with document spans. Pure: no I/O.

Every packer reports each document's fate exactly once to an `Account` (kept with its packed
and tail tokens, or dropped with a reason), so the ledger's invariants hold by construction.

`indices` spans follow ProLong: half-open [start, end) token ranges of each document piece in
the row, sorted, contiguous, starting at 0 and ending at the row's length.

Packing modes (a source's `packing` key; `make_packer` picks the packer per bucket):
- `prolong`: datatools parity. Whole-document buckets (min_tokens 0) are packed greedily
  (`GreedyPacker`); length buckets are cut into chunks with tails counted (`ChunkPacker`,
  ProLong's `--split_by_lengths`, and the 512K-from-64K layout).
- `best_fit`: best-fit-decreasing (`BestFitPacker`) in whole-document buckets: no document of
  at most seq_len tokens is ever split; rows are padded, and the padding is its own final span
  with mask 0, so those subsets carry a `mask` column. Length buckets chunk as in `prolong`.
- `concat_chunk`: naive concatenate-and-chunk for every bucket, length buckets included (the
  baseline of Ding et al. 2024; kept for benchmarks and comparisons).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

PackingMode = Literal["prolong", "best_fit", "concat_chunk"]  # a source's `packing` key; see make_packer


@dataclass
class TokDoc:
    doc_id: str
    ids: np.ndarray  # uint32
    mask: np.ndarray | None = None  # uint8; 1 = counts in the loss (chat data)
    pass_no: int = 0  # which read pass of its source produced it (repeat > 1 reads a source again)


@dataclass
class Row:
    input_ids: np.ndarray  # uint32
    spans: np.ndarray  # (n, 2) uint32
    mask: np.ndarray | None = None
    doc_ids: tuple[str, ...] = ()  # one per span; "" for a padding span
    padding: int = 0  # pad tokens at the end of the row (its last span, mask 0)
    # One per span: (where the piece starts in its document, the document's tokens); (0, 0) for
    # padding. A piece starting past 0 continues a document from an earlier row.
    doc_offsets: tuple[tuple[int, int], ...] = ()


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


def _make_row(parts: list[tuple[TokDoc, int, int]], with_mask: bool, *, pad: int = 0, pad_id: int = 0) -> Row:
    """A row from document pieces, plus `pad` tokens of `pad_id` as a final span with mask 0."""
    chunks = [d.ids[a:b] for d, a, b in parts]
    lengths = [b - a for _, a, b in parts]
    if pad:
        chunks.append(np.full(pad, pad_id, dtype=np.uint32))
        lengths.append(pad)
    ids = np.concatenate(chunks).astype(np.uint32, copy=False)
    ends = np.cumsum(np.asarray(lengths, dtype=np.int64))
    spans = np.stack([ends - lengths, ends], axis=1).astype(np.uint32)
    mask = None
    if with_mask:
        masks = [d.mask[a:b] if d.mask is not None else np.ones(b - a, dtype=np.uint8) for d, a, b in parts]
        if pad:
            masks.append(np.zeros(pad, dtype=np.uint8))
        mask = np.concatenate(masks).astype(np.uint8, copy=False)
    doc_ids = tuple(d.doc_id for d, _, _ in parts) + (("",) if pad else ())
    offsets = tuple((a, len(d.ids)) for d, a, _ in parts) + (((0, 0),) if pad else ())
    return Row(ids, spans, mask, doc_ids, pad, offsets)


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
    partial row is dropped and its documents counted (`final_partial_row`)."""

    def __init__(self, seq_len: int, acct: Account, *, with_mask: bool = False):
        self.seq_len, self.acct, self.with_mask = seq_len, acct, with_mask
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

    @property
    def pending_tokens(self) -> int:
        """Tokens accepted but not yet written in a row."""
        return self.fill

    def finish(self) -> Iterator[Row]:
        _close_leftovers(self.pending, self.acct)
        self.pending = []
        yield from ()

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

    @property
    def pending_tokens(self) -> int:
        return len(self.pending) * self.chunk

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


@dataclass
class _Owner:
    """A document in the best-fit packer: reported kept once its last piece is written."""

    doc: TokDoc
    usable: int  # tokens that will be packed; the rest is its tail
    pieces: int  # pieces in all
    unwritten: int  # pieces not yet in a written row


@dataclass
class _Piece:
    """A piece of at most seq_len tokens waiting in the best-fit buffer: `doc`'s tokens from
    `start` on (a long document's remainder starts past its full-row chunks)."""

    doc: TokDoc
    start: int
    owner: _Owner

    @property
    def n(self) -> int:
        return len(self.doc.ids) - self.start


class BestFitPacker:
    """Best-fit-decreasing over a bounded buffer (Ding et al. 2024, "Fewer Truncations Improve
    Language Modeling", arXiv 2404.10830).

    A document longer than `seq_len` is cut into `seq_len` chunks, each a full row at once; its
    remainder is packed like any other piece. A document of at most `seq_len` tokens is never
    split. Pieces wait in a buffer; when it holds `buffer_tokens`, they are placed largest first,
    each in the open row with the least room that still fits it. Rows within `slack` tokens of
    full are written; the pieces of emptier rows go back to the buffer to meet later documents,
    as long as they take at most half of it (else the fullest of those rows are written too), so
    memory stays bounded. `finish` writes every row. A row's unused room is padding: `pad_id`
    tokens in a final span with mask 0 (so the trainer takes no loss on it), counted per row.
    """

    def __init__(self, seq_len: int, acct: Account, *, with_mask: bool = True, pad_id: int = 0,
                 buffer_tokens: int | None = None, slack: int | None = None):
        self.seq_len, self.acct, self.with_mask, self.pad_id = seq_len, acct, with_mask, pad_id
        # 8M tokens (32 MB of ids) is 128 rows of 64K: enough small documents to fill the gaps
        # that the large ones leave. At least 8 rows, so 512K rows still have company.
        self.buffer_tokens = buffer_tokens or max(8 << 20, 8 * seq_len)
        # 0.1% of a row: 65 tokens at 64K. Waiting longer for an exact fit gains almost nothing.
        self.slack = seq_len // 1000 if slack is None else slack
        self.buffer: list[_Piece] = []
        self.buffered = 0

    @property
    def pending_tokens(self) -> int:
        return self.buffered

    def add(self, doc: TokDoc, max_tokens: float | None = None) -> Iterator[Row]:
        """`max_tokens` caps a long document at whole rows (a token budget's remainder, rounded
        up); the rest of it is counted as its tail. Documents of at most seq_len go in whole."""
        n, L = len(doc.ids), self.seq_len
        if n == 0:
            self.acct.dropped(doc, "no_tokens", 0)
            return
        usable = n
        if max_tokens is not None and n > L:
            usable = min(n, max(1, -(-int(max_tokens) // L)) * L)
        full_rows, rest = divmod(usable, L)
        pieces = full_rows + (1 if rest else 0)
        owner = _Owner(doc, usable, pieces, pieces)
        for i in range(full_rows):
            yield _make_row([(doc, i * L, (i + 1) * L)], self.with_mask)
            self._written(owner)
        if rest:
            self.buffer.append(_Piece(doc, full_rows * L, owner))
            self.buffered += rest
            if self.buffered >= self.buffer_tokens:
                yield from self._flush(final=False)

    def finish(self) -> Iterator[Row]:
        yield from self._flush(final=True)

    def _written(self, owner: _Owner) -> None:
        owner.unwritten -= 1
        if owner.unwritten == 0:
            tail = len(owner.doc.ids) - owner.usable
            self.acct.kept(owner.doc, packed=owner.usable, tail=tail, split=owner.pieces > 1)

    def _flush(self, *, final: bool) -> Iterator[Row]:
        bins = best_fit_decreasing([p.n for p in self.buffer], self.seq_len)
        used = [sum(self.buffer[i].n for i in members) for members in bins]
        keep: set[int] = set()
        if not final:
            loose = sorted((b for b in range(len(bins)) if self.seq_len - used[b] > self.slack),
                           key=lambda b: (used[b], b))  # emptiest first: they gain most by waiting
            held = 0
            for b in loose:
                if held + used[b] > self.buffer_tokens // 2:
                    break
                keep.add(b)
                held += used[b]
        carried = []
        for b, members in enumerate(bins):
            pieces = [self.buffer[i] for i in members]
            if b in keep:
                carried += pieces
                continue
            yield _make_row([(p.doc, p.start, p.start + p.n) for p in pieces], self.with_mask,
                            pad=self.seq_len - used[b], pad_id=self.pad_id)
            for p in pieces:
                self._written(p.owner)
        self.buffer = carried
        self.buffered = sum(p.n for p in carried)


def best_fit_decreasing(sizes: list[int], capacity: int) -> list[list[int]]:
    """Bins of item indices: items largest first (ties by index), each into the bin with the
    least room that fits it, else a new bin. Deterministic; O(n log n + n * bins)."""
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i], i))
    bins: list[list[int]] = []
    rooms: list[tuple[int, int]] = []  # (room, bin), sorted: bisect finds the tightest fit
    for i in order:
        k = bisect_left(rooms, (sizes[i], -1))
        if k == len(rooms):
            bins.append([i])
            insort(rooms, (capacity - sizes[i], len(bins) - 1))
            continue
        room, b = rooms.pop(k)
        bins[b].append(i)
        insort(rooms, (room - sizes[i], b))
    return bins


def make_packer(mode: PackingMode, *, seq_len: int, min_tokens: int, chunk_tokens: int, acct: Account,
                with_mask: bool, pad_id: int = 0):
    """The packer for one bucket of a source with packing `mode` (see the module docstring)."""
    if mode == "concat_chunk":
        return GreedyPacker(seq_len, acct, with_mask=with_mask)
    if min_tokens > 0:
        return ChunkPacker(chunk_tokens, seq_len, acct, with_mask=with_mask)
    if mode == "best_fit":
        return BestFitPacker(seq_len, acct, with_mask=with_mask, pad_id=pad_id)
    return GreedyPacker(seq_len, acct, with_mask=with_mask)


def subset_has_mask(mode: str, min_tokens: int, chat: bool) -> bool:
    """Chat data carries its loss mask; best-fit rows carry one that zeroes their padding."""
    return chat or (mode == "best_fit" and min_tokens == 0)


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
