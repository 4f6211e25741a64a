"""Compact, mergeable length statistics recorded at build time.

A build may pack billions of documents, so it keeps no list of lengths. Each task records a
histogram with 8 log-spaced bins per doubling; the finalize step sums the tasks' histograms.
A bin spans a factor of 2^(1/8) = 1.09, so a median or p90 read from it (interpolated in log
space inside its bin) is within 9% of the exact value, while mean, min and max are exact.
A stream's histogram is at most a few hundred (bin, count) pairs in manifest.json.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

BINS_PER_OCTAVE = 8


def bin_of(n: int) -> int:
    """The bin holding length `n` (lengths below 1 share bin 0 with length 1)."""
    return int(math.floor(math.log2(max(n, 1)) * BINS_PER_OCTAVE + 1e-9))


def bin_edges(b: int) -> tuple[float, float]:
    return 2 ** (b / BINS_PER_OCTAVE), 2 ** ((b + 1) / BINS_PER_OCTAVE)


class LengthHistogram:
    """Counts of lengths (tokens per document, pieces per row) in log-spaced bins."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.n = 0
        self.total = 0
        self.min: int | None = None
        self.max: int | None = None

    def add(self, length: int, times: int = 1) -> None:
        self.counts[bin_of(length)] += times
        self.n += times
        self.total += length * times
        self.min = length if self.min is None else min(self.min, length)
        self.max = length if self.max is None else max(self.max, length)

    def merge(self, other: LengthHistogram) -> LengthHistogram:
        self.counts.update(other.counts)
        self.n += other.n
        self.total += other.total
        for attr, pick in (("min", min), ("max", max)):
            mine, theirs = getattr(self, attr), getattr(other, attr)
            setattr(self, attr, theirs if mine is None else mine if theirs is None else pick(mine, theirs))
        return self

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    def quantile(self, q: float) -> float | None:
        """The q-quantile, read from the bins (within one bin, 9%, of the exact value)."""
        if not self.n:
            return None
        rank = q * self.n
        seen = 0
        for b in sorted(self.counts):
            c = self.counts[b]
            if seen + c >= rank:
                lo, hi = bin_edges(b)
                frac = (rank - seen) / c
                value = lo * (hi / lo) ** frac
                return float(min(max(value, self.min), self.max))
            seen += c
        return float(self.max)

    def summary(self) -> dict[str, float | int | None]:
        return {"n": self.n, "mean": self.mean, "median": self.quantile(0.5), "p90": self.quantile(0.9),
                "min": self.min, "max": self.max}

    def to_dict(self) -> dict[str, Any]:
        return {"bins_per_octave": BINS_PER_OCTAVE, "counts": {str(b): c for b, c in sorted(self.counts.items())},
                "n": self.n, "sum": self.total, "min": self.min, "max": self.max}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> LengthHistogram:
        h = cls()
        if not data:
            return h
        h.counts = Counter({int(b): c for b, c in data["counts"].items()})
        h.n, h.total, h.min, h.max = data["n"], data["sum"], data["min"], data["max"]
        return h


def merge_dicts(parts: Iterable[dict[str, Any] | None]) -> dict[str, Any]:
    """Sum histograms given in their dict form (per-task results)."""
    total = LengthHistogram()
    for p in parts:
        total.merge(LengthHistogram.from_dict(p))
    return total.to_dict()


def track_lengths(docs: Iterable, hist: LengthHistogram) -> Iterator:
    """Pass documents through, recording each one's token count (what a source offered
    before routing to buckets: the evidence when a long bucket cannot be filled)."""
    for doc in docs:
        hist.add(len(doc.ids))
        yield doc


class RowStats:
    """Per-row shape of one bucket: pieces per row, and fill (tokens / seq_len, in percent)."""

    def __init__(self, seq_len: int) -> None:
        self.seq_len = seq_len
        self.pieces = LengthHistogram()
        self.fill_pct: Counter = Counter()

    def add(self, n_tokens: int, n_pieces: int) -> None:
        self.pieces.add(n_pieces)
        self.fill_pct[int(100 * n_tokens // self.seq_len)] += 1

    def to_dict(self) -> dict[str, Any]:
        return {"row_pieces": self.pieces.to_dict(),
                "row_fill_pct": {str(k): v for k, v in sorted(self.fill_pct.items())}}


def merge_bucket_stats(buckets: list[dict[str, Any]]) -> dict[str, Any]:
    """The length statistics of one (source, bucket) summed over its tasks' results."""
    fill: Counter = Counter()
    for b in buckets:
        fill.update({int(k): v for k, v in b.get("row_fill_pct", {}).items()})
    return {"doc_lengths": merge_dicts(b.get("doc_lengths") for b in buckets),
            "row_pieces": merge_dicts(b.get("row_pieces") for b in buckets),
            "row_fill_pct": {str(k): v for k, v in sorted(fill.items())}}
