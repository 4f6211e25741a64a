"""Pipeline stages. Each is a generator over documents that does its own accounting in the
task's `Ledger`; `build.py` chains them in order."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from datatrove.data import Document

from mixcraft.core.chat import ChatSkip, render_chat
from mixcraft.curate.filters import Filter
from mixcraft.core.ledger import Ledger
from mixcraft.core.lengths import LengthHistogram, RowStats
from mixcraft.mds import SubsetWriter
from mixcraft.core.pack import Row, TokDoc, make_packer
from mixcraft.recipe import Bucket
from mixcraft.core.tokenize import Tok


def take_docs(docs: Iterable[Document], limit: int | None) -> Iterator[Document]:
    """At most `limit` documents (the `--limit` of a trial build); None means all. Stops
    without pulling document `limit + 1`: a reader counts a document as read when it yields it,
    so pulling one more would break read = kept + dropped."""
    if limit is not None and limit <= 0:
        return
    for i, doc in enumerate(docs, 1):
        yield doc
        if limit is not None and i >= limit:
            return


def filter_text(docs: Iterable[Document], filters: list[Filter], ledger: Ledger) -> Iterator[Document]:
    """Run the text-level filters; the first that objects names the drop reason."""
    text_filters = [f for f in filters if not f.on_tokens]
    for doc in docs:
        reason = next((r for f in text_filters if (r := f.check(doc)) is not None), None)
        if reason:
            ledger.drop(reason, where=str(doc.id), text=doc.text)
            continue
        yield doc


def tokenize_docs(docs: Iterable[Document], tok: Tok, ledger: Ledger, *, add_bos: bool = False,
                  add_eos: bool = False) -> Iterator[TokDoc]:
    """Text -> uint32 ids (chat -> ids and loss mask). BOS/EOS only if the recipe asks
    (ProLong's data has neither)."""
    import numpy as np

    bos = [tok.bos_id] if add_bos and tok.bos_id is not None else []
    eos = [tok.eos_id] if add_eos and tok.eos_id is not None else []
    for doc in docs:
        mask = None
        if "messages" in doc.metadata:
            try:
                ids, mask = render_chat(doc.metadata["messages"], tok, loss_on_input=doc.metadata["loss_on_input"],
                                        template=doc.metadata.get("template", "llama3"),
                                        chat_template=doc.metadata.get("chat_template"))
            except ChatSkip as skip:
                ledger.drop(skip.args[0], where=str(doc.id), text=doc.text)
                continue
        else:
            ids = tok.encode(doc.text)
            if bos or eos:
                ids = np.concatenate([np.asarray(bos, dtype=np.uint32), ids, np.asarray(eos, dtype=np.uint32)])
        if len(ids) == 0:
            ledger.drop("no_tokens", where=str(doc.id))
            continue
        yield TokDoc(str(doc.id), ids, mask)


def filter_tokens(docs: Iterable[TokDoc], filters: list[Filter], ledger: Ledger) -> Iterator[TokDoc]:
    token_filters = [f for f in filters if f.on_tokens]
    for doc in docs:
        reason = next((r for f in token_filters if (r := f.check(None, n_tokens=len(doc.ids))) is not None), None)
        if reason:
            ledger.drop(reason, where=doc.doc_id, tokens=len(doc.ids))
            continue
        yield doc


class BucketAccount:
    """Routes a packer's per-document verdicts to the ledger and to per-bucket counts."""

    def __init__(self, ledger: Ledger, bucket: str, counts: Counter, lengths: LengthHistogram | None = None):
        self.ledger, self.bucket, self.counts = ledger, bucket, counts
        self.lengths = lengths if lengths is not None else LengthHistogram()

    def kept(self, doc: TokDoc, *, packed: int, tail: int, split: bool) -> None:
        led = self.ledger
        led.docs_kept += 1
        led.docs_split += int(split)
        led.tokens_kept += packed + tail
        led.tokens_packed += packed
        led.tokens_tail += tail
        self.counts["docs"] += 1
        self.counts["split"] += int(split)
        self.counts["tail_tokens"] += tail
        self.lengths.add(len(doc.ids))  # whole-document length, for stats' mean/median/p90

    def dropped(self, doc: TokDoc, reason: str, tokens: int) -> None:
        self.ledger.drop(reason, where=doc.doc_id, tokens=tokens)


class BucketSink:
    """One bucket of one task: its packer (by the source's packing mode), its MDS writer, its
    token budget."""

    def __init__(self, bucket: Bucket, seq_len: int, ledger: Ledger, writer: SubsetWriter,
                 budget_tokens: float | None, *, packing: str = "prolong", pad_id: int = 0):
        self.bucket, self.writer, self.budget = bucket, writer, budget_tokens
        self.counts: Counter = Counter()
        self.doc_lengths, self.row_stats = LengthHistogram(), RowStats(seq_len)
        acct = BucketAccount(ledger, bucket.name, self.counts, self.doc_lengths)
        self.packer = make_packer(packing, seq_len=seq_len, min_tokens=bucket.min_tokens,
                                  chunk_tokens=bucket.chunk_tokens, acct=acct, with_mask=writer.with_mask,
                                  pad_id=pad_id)

    @property
    def full(self) -> bool:
        return self.budget is not None and self.writer.tokens + self.packer_fill >= self.budget

    def add(self, doc: TokDoc) -> None:
        # One long document (a whole repository) must not blow through the budget.
        remaining = None if self.budget is None else self.budget - self.writer.tokens - self.packer_fill
        self._write(self.packer.add(doc, max_tokens=remaining))

    @property
    def packer_fill(self) -> int:
        """Tokens accepted by the packer but not yet written in a row."""
        return self.packer.pending_tokens

    def finish(self) -> dict:
        self._write(self.packer.finish())
        self.writer.finish()
        return {"rows": self.writer.rows, "tokens": self.writer.tokens, "pieces": self.writer.pieces,
                "docs": self.counts["docs"], "split": self.counts["split"],
                "tail_tokens": self.counts["tail_tokens"], "padding": self.counts["padding"],
                "doc_lengths": self.doc_lengths.to_dict(), **self.row_stats.to_dict()}

    def _write(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.writer.write(row)
            self.row_stats.add(len(row.input_ids), len(row.spans))
            self.counts["padding"] += row.padding


def route_and_pack(docs: Iterable[TokDoc], sinks: list[BucketSink], ledger: Ledger) -> Iterator[TokDoc]:
    """Send each document to the longest bucket whose `min_tokens` it reaches. Shorter than
    every bucket: dropped as `too_short`. Its bucket over budget: `over_budget`. Stops reading
    once every bucket is full (the ledger records that the budget was reached)."""
    for doc in docs:
        n = len(doc.ids)
        sink = next((s for s in sinks if n >= s.bucket.min_tokens), None)
        if sink is None:
            ledger.drop("too_short", where=doc.doc_id, tokens=n)
        elif sink.full:
            ledger.drop("over_budget", where=doc.doc_id, tokens=n)
        else:
            sink.add(doc)
        yield doc
        if all(s.full for s in sinks):
            ledger.budget_reached = True
            return


class Progress:
    """A task's running counts, written to a small JSON file the CLI polls for its bars."""

    def __init__(self, path: Path, source: str, total_bytes: int):
        self.path, self.source, self.total = path, source, total_bytes
        self.docs = self.tokens = self.chars = 0
        self._last = 0.0
        path.parent.mkdir(parents=True, exist_ok=True)

    def track_text(self, docs: Iterable[Document]) -> Iterator[Document]:
        for doc in docs:
            self.chars += len(doc.text)
            yield doc

    def track_tokens(self, docs: Iterable[TokDoc]) -> Iterator[TokDoc]:
        for doc in docs:
            self.docs += 1
            self.tokens += len(doc.ids)
            now = time.monotonic()
            if now - self._last > 0.5:
                self.save(done=False)
                self._last = now
            yield doc

    def save(self, *, done: bool) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"source": self.source, "docs": self.docs, "tokens": self.tokens,
                                   "chars": self.chars, "total_bytes": self.total, "done": done}))
        tmp.replace(self.path)
