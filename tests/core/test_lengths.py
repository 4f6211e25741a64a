"""Length histograms: quantiles read from log bins stay within one bin (9%) of the exact
values, merging equals building from all the data, and the dict form round-trips."""

import numpy as np
import pytest

from mixcraft.core.lengths import LengthHistogram, RowStats, merge_bucket_stats, merge_dicts


def _hist(values) -> LengthHistogram:
    h = LengthHistogram()
    for v in values:
        h.add(int(v))
    return h


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quantiles_within_one_bin(seed):
    rng = np.random.default_rng(seed)
    lengths = np.maximum(1, rng.lognormal(mean=7, sigma=2, size=5000)).astype(int)
    h = _hist(lengths)
    assert h.n == len(lengths) and h.total == lengths.sum()
    assert h.mean == pytest.approx(lengths.mean())
    for q in (0.1, 0.5, 0.9):
        exact = float(np.quantile(lengths, q))
        assert abs(h.quantile(q) / exact - 1) < 0.09, (q, h.quantile(q), exact)
    assert (h.min, h.max) == (lengths.min(), lengths.max())


def test_merge_equals_whole_and_round_trips():
    a, b = [3, 70, 9000, 1], [512, 65536, 12]
    merged = merge_dicts([_hist(a).to_dict(), None, _hist(b).to_dict()])
    assert merged == _hist(a + b).to_dict()
    back = LengthHistogram.from_dict(merged)
    assert back.summary() == _hist(a + b).summary()
    assert LengthHistogram.from_dict(None).summary()["median"] is None


def test_row_stats_merge():
    parts = []
    for fills in ([1024, 1024], [512]):
        rs = RowStats(seq_len=1024)
        for n in fills:
            rs.add(n, n_pieces=3)
        parts.append(rs.to_dict())
    merged = merge_bucket_stats(parts)
    assert merged["row_fill_pct"] == {"50": 1, "100": 2}
    assert merged["row_pieces"]["n"] == 3
