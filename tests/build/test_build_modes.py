"""End-to-end builds of every packing mode on real stdlib text, read back through the real
StreamingDataset, and checked by `mixcraft verify`."""

from __future__ import annotations

import json

import numpy as np

from mixcraft.mds import iter_rows
from mixcraft.report.verify import verify_output


def test_reference_build_verifies(reference, corpus):
    out, _ = reference
    assert verify_output(out) == []
    manifest = json.loads((out / "manifest.json").read_text())
    streams = {(s["source"], s["bucket"]): s for s in manifest["streams"]}
    assert set(streams) == {("code", "4096"), ("code", "1024"), ("short_bf", "4096"), ("short_prolong", "4096"),
                            ("short_concat", "4096")}
    for s in streams.values():
        assert s["rows"] > 0, f"{s['path']} is empty"
    # Same documents, three packings: best_fit pads a little and splits none of them (all are
    # shorter than a row or chunked at it); greedy splits many and pads nothing.
    bf, greedy = streams["short_bf", "4096"], streams["short_prolong", "4096"]
    assert 0 < bf["padding"] < 0.01 * bf["tokens"]
    assert greedy["padding"] == 0 and greedy["split"] > 10
    led = manifest["ledger"]
    assert led["short_bf"]["docs"]["read"] == led["short_prolong"]["docs"]["read"] > 100
    from mixcraft.core.tokenize import load_tokenizer

    tok = load_tokenizer("llama3")
    lengths = [len(tok.encode(json.loads(line)["text"])) for line in open(corpus / "short.jsonl")]
    longer_than_a_row = sum(n > 4096 for n in lengths)
    assert 0 < longer_than_a_row < led["short_prolong"]["docs"]["split"]
    assert led["short_bf"]["docs"]["split"] == longer_than_a_row  # no short document split
    assert bf["mask"] and not greedy["mask"]


def test_best_fit_rows_carry_a_mask_that_zeroes_padding(reference):
    out, _ = reference
    padded = 0
    for row in iter_rows(out / "short_bf" / "4096"):
        mask, spans = np.asarray(row["mask"]), row["indices"]
        a, b = spans[-1]
        if not mask[a:b].any():  # the padding span
            padded += 1
            assert mask[:a].all() and (np.asarray(row["input_ids"])[a:b] == 128001).all()
        else:
            assert mask.all()
    assert padded > 0


def test_length_bucket_rows_are_four_aligned_chunks(reference):
    out, _ = reference
    rows = list(iter_rows(out / "code" / "1024"))
    assert rows
    for row in rows:
        assert row["indices"].tolist() == [[i * 1024, (i + 1) * 1024] for i in range(4)]
