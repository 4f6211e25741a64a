"""The pre-mixed stream: exact proportions, every prefix close to them, rows readable by an
unmodified StreamingDataset, and checked by verify."""

import json
import shutil

import numpy as np
import pytest

from helpers import rewrite_manifest
from mixcraft.build.premix import interleave_order, premix_counts


@pytest.mark.parametrize("rows, props", [([100, 40, 7], [0.5, 0.3, 0.2]), ([13, 13], [0.5, 0.5]),
                                         ([1000, 3, 50], [0.6, 0.1, 0.3])])
def test_counts_are_exact_and_never_exceed_the_rows(rows, props):
    counts = premix_counts(rows, props)
    n = sum(counts)
    assert n > 0
    assert all(c <= r for c, r in zip(counts, rows, strict=True))
    assert any(c == r for c, r in zip(counts, rows, strict=True)), "the scarcest stream gives all its rows"
    for c, p in zip(counts, props, strict=True):
        assert abs(c - n * p) <= 1


def test_every_prefix_is_within_a_row_or_two_of_the_proportions():
    counts = [50, 30, 20]
    order = interleave_order(counts)
    assert sorted(np.bincount(order).tolist()) == sorted(counts)
    taken = np.zeros(3)
    for t, i in enumerate(order, start=1):
        taken[i] += 1
        assert np.all(np.abs(taken - t * np.array(counts) / 100) <= 1.5), (t, taken)


def test_premixed_subset_matches_its_manifest(knobs_build):
    from streaming import StreamingDataset

    out, manifest = knobs_build
    pm = manifest["premixed"]
    assert pm["rows"] > 0 and pm["mask"], "the chat stream brings a mask column"
    ds = StreamingDataset(local=str(out / pm["path"]), shuffle=False, batch_size=1)
    domains = [ds[i]["domain"] for i in range(ds.num_samples)]
    assert len(domains) == pm["rows"]
    by_domain = {s["domain"]: s for s in pm["streams"]}
    for domain, s in by_domain.items():
        assert domains.count(domain) == s["rows"]
        assert abs(s["rows"] / pm["rows"] - s["proportion"]) <= 1 / pm["rows"]
    binding = [s for s in pm["streams"] if s["rows"] == s["rows_available"]]
    assert binding, "the scarcest stream is used whole"
    assert manifest["prolong_streams"] and pm["prolong_stream"] == "premixed@1"


def test_verify_reads_the_premixed_subset(knobs_build, tmp_path, mixcraft):
    out, _ = knobs_build
    code, _, stderr = mixcraft("verify", out)
    assert code == 0, stderr
    bad = tmp_path / "out"
    shutil.copytree(out, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["premixed"]["streams"][0]["tokens"] += 1024
    rewrite_manifest(bad, manifest)
    code, _, stderr = mixcraft("verify", bad)
    assert code == 1
    s = manifest["premixed"]["streams"][0]
    assert stderr.splitlines() == [f"FAULT premixed: {s['tokens'] - 1024:,} tokens from {s['domain']}, manifest says "
                                   f"{s['tokens']:,}"]
