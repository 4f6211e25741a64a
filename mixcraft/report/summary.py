"""The mixture as built, per source and per bucket, from the typed manifest: what `stats`
prints as tables, as JSON and in the HTML report.

Shares are of packed tokens. A source's target is its proportion in the recipe; a bucket's
target is its own proportion where the recipe gives buckets proportions (the stage-2 layout),
else the buckets share their source's target. Document lengths are of the documents kept in
a bucket, read from the build's length histograms (median and p90 within 9%).
"""

from __future__ import annotations

from mixcraft.core.lengths import LengthHistogram
from mixcraft.core.manifest import Histogram, Manifest
from mixcraft.report.explain import explain_deviations
from mixcraft.report.rows import Lengths, SourceRow, StreamRow, Summary


def _merged(hists: list[Histogram]) -> LengthHistogram:
    total = LengthHistogram()
    for h in hists:
        total.merge(h.load())
    return total


def stream_rows(m: Manifest) -> list[StreamRow]:
    total = m.packed_tokens() or 1
    rows = []
    for s in m.streams:
        led = m.ledger[s.source]
        own = m.sources[s.source].bucket_proportions.get(s.bucket)
        actual = s.tokens / total
        rows.append(StreamRow(
            source=s.source, bucket=s.bucket, path=s.path, rows=s.rows, docs=s.docs, tokens=s.tokens, target=own,
            actual=actual, deviation_pp=None if own is None else 100 * (actual - own), split=s.split,
            padding=s.padding, tail_tokens=s.tail_tokens, dropped=led.docs.dropped, budget_reached=led.budget_reached,
            **vars(Lengths.of(s.doc_lengths.load()))))
    return rows


def source_rows(m: Manifest) -> list[SourceRow]:
    total = m.packed_tokens() or 1
    rows = []
    for name, src in m.sources.items():
        mine = m.source_streams(name)
        tokens = sum(s.tokens for s in mine)
        led = m.ledger[name]
        rows.append(SourceRow(
            source=name, buckets=len(mine), rows=sum(s.rows for s in mine), docs=sum(s.docs for s in mine),
            tokens=tokens, target=src.proportion, actual=tokens / total,
            deviation_pp=100 * (tokens / total - src.proportion), split=sum(s.split for s in mine),
            padding=sum(s.padding for s in mine), tail_tokens=sum(s.tail_tokens for s in mine),
            dropped=led.docs.dropped, read=led.docs.read, repeated=src.docs_repeated, passes=src.passes,
            **vars(Lengths.of(_merged([s.doc_lengths for s in mine])))))
    return rows


def summarize(m: Manifest) -> Summary:
    sources = source_rows(m)
    return Summary(recipe=m.recipe, seq_len=m.seq_len, total_tokens=m.total_tokens,
                   packed_tokens=sum(r.tokens for r in sources), sources=sources, streams=stream_rows(m),
                   why=explain_deviations(sources, m), prolong_streams=m.prolong_streams, premixed=m.premixed,
                   ledger=m.ledger)
