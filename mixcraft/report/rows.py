"""The rows of the `stats` tables: one per (source, bucket) stream and one per source, and the
summary that holds them (what `stats --json` prints)."""

from __future__ import annotations

from dataclasses import dataclass

from mixcraft.core.lengths import LengthHistogram
from mixcraft.core.manifest import LedgerSummary, Premix, RecipeRef
from mixcraft.schema import to_data


@dataclass(frozen=True, kw_only=True)
class Lengths:
    len_mean: float | None
    len_median: float | None
    len_p90: float | None

    @classmethod
    def of(cls, hist: LengthHistogram) -> Lengths:
        s = hist.summary()
        return cls(len_mean=s["mean"], len_median=s["median"], len_p90=s["p90"])


@dataclass(frozen=True, kw_only=True)
class StreamRow(Lengths):
    """One (source, bucket) stream: actual vs target share of the packed tokens."""

    source: str
    bucket: str
    path: str
    rows: int
    docs: int
    tokens: int
    target: float | None  # None: the buckets share their source's target
    actual: float
    deviation_pp: float | None
    split: int
    padding: int
    tail_tokens: int
    dropped: dict[str, int]
    budget_reached: bool


@dataclass(frozen=True, kw_only=True)
class SourceRow(Lengths):
    """One source: its streams summed, target = its proportion in the recipe."""

    source: str
    buckets: int
    rows: int
    docs: int
    tokens: int
    target: float
    actual: float
    deviation_pp: float
    split: int
    padding: int
    tail_tokens: int
    dropped: dict[str, int]
    read: int
    repeated: int
    passes: int


@dataclass(frozen=True, kw_only=True)
class Summary:
    """Everything `stats --json` prints."""

    recipe: RecipeRef
    seq_len: int
    total_tokens: int | None
    packed_tokens: int
    sources: list[SourceRow]
    streams: list[StreamRow]
    why: dict[str, str]  # source -> why its share is more than 1 pp off target
    prolong_streams: list[str]
    premixed: Premix | None
    ledger: dict[str, LedgerSummary]

    def to_data(self) -> dict:
        return to_data(self)

    def streams_of(self, source: str) -> list[StreamRow]:
        return [s for s in self.streams if s.source == source]
