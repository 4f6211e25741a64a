"""One bucket of one task: its packer (by the source's packing mode), its token budget, and
the counts that end in the manifest (documents, splits, tails, padding, length histograms)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from mixcraft.core.ledger import Ledger
from mixcraft.core.lengths import LengthHistogram, RowStats
from mixcraft.core.pack import PackingMode, Row, TokDoc, make_packer
from mixcraft.core.recipe import Bucket


@dataclass(frozen=True)
class BucketRow:
    """A packed row and the bucket (subset) it belongs to."""

    bucket: str
    row: Row


class BucketAccount:
    """Routes a packer's per-document verdicts to the ledger and to per-bucket counts."""

    def __init__(self, ledger: Ledger, counts: Counter, lengths: LengthHistogram):
        self.ledger, self.counts, self.lengths = ledger, counts, lengths

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
    """Packs the documents routed to one bucket until its budget is met."""

    def __init__(self, bucket: Bucket, seq_len: int, ledger: Ledger, budget_tokens: float | None, *,
                 packing: PackingMode, with_mask: bool, pad_id: int):
        self.bucket, self.budget = bucket, budget_tokens
        self.counts: Counter = Counter()
        self.emitted = 0  # tokens in rows handed on to be written
        self.doc_lengths, self.row_stats = LengthHistogram(), RowStats(seq_len)
        acct = BucketAccount(ledger, self.counts, self.doc_lengths)
        self.packer = make_packer(packing, seq_len=seq_len, min_tokens=bucket.min_tokens,
                                  chunk_tokens=bucket.chunk_tokens, acct=acct, with_mask=with_mask, pad_id=pad_id)

    @property
    def full(self) -> bool:
        return self.budget is not None and self.emitted + self.packer.pending_tokens >= self.budget

    def add(self, doc: TokDoc) -> Iterator[BucketRow]:
        # One long document (a whole repository) must not blow through the budget.
        remaining = None if self.budget is None else self.budget - self.emitted - self.packer.pending_tokens
        yield from self._rows(self.packer.add(doc, max_tokens=remaining))

    def finish(self) -> Iterator[BucketRow]:
        yield from self._rows(self.packer.finish())

    def to_dict(self) -> dict:
        return {"docs": self.counts["docs"], "split": self.counts["split"],
                "tail_tokens": self.counts["tail_tokens"], "padding": self.counts["padding"],
                "doc_lengths": self.doc_lengths.to_dict(), **self.row_stats.to_dict()}

    def _rows(self, rows: Iterable[Row]) -> Iterator[BucketRow]:
        for row in rows:
            self.emitted += len(row.input_ids)
            self.row_stats.add(len(row.input_ids) - row.padding, len(row.spans) - (1 if row.padding else 0))
            self.counts["padding"] += row.padding
            yield BucketRow(self.bucket.name, row)
