"""Length buckets: ProLong's stage-2 layout, a 512K row made of eight 64K chunks."""

from __future__ import annotations

import numpy as np
from packhelp import Ledgerish, synthetic_docs

from mixcraft.build.load import parse_recipe
from mixcraft.core.pack import ChunkPacker, check_row, make_packer, pack_all

K64, K512 = 65_536, 524_288


def test_512k_rows_from_64k_chunks():
    # Real sizes: documents of 1.5, 3.2, 0.9 (too short), 2.0 and 4.1 chunks of 64K.
    lengths = [int(f * K64) for f in (1.5, 3.2, 0.9, 2.0, 4.1)]
    docs = synthetic_docs(lengths, seed=3)
    acct = Ledgerish()
    rows = list(pack_all(ChunkPacker(K64, K512, acct), docs))
    chunks = sum(n // K64 for n in lengths)  # 1 + 3 + 0 + 2 + 4 = 10: one full row, 2 chunks left
    assert chunks == 10 and len(rows) == 1
    row = rows[0]
    assert check_row(row, K512) == []
    assert row.spans.tolist() == [[i * K64, (i + 1) * K64] for i in range(8)]
    # Every chunk starts at a multiple of 64K inside its document (ProLong's split_by_lengths).
    by_id = {d.doc_id: d for d in docs}
    seen: dict[str, int] = {}
    for (a, b), doc_id in zip(row.spans.tolist(), row.doc_ids, strict=True):
        k = seen.get(doc_id, 0)
        assert np.array_equal(row.input_ids[a:b], by_id[doc_id].ids[k * K64:(k + 1) * K64])
        seen[doc_id] = k + 1
    assert seen == {"d00000": 1, "d00001": 3, "d00003": 2, "d00004": 2}
    # The short document is dropped with a reason; the 2 chunks past the last full row are counted.
    assert acct.dropped_docs["d00002"] == ("shorter_than_chunk", lengths[2])
    assert acct.dropped_docs == {"d00002": ("shorter_than_chunk", lengths[2])}
    assert acct.kept_docs["d00004"] == {"packed": 2 * K64, "tail": lengths[4] - 2 * K64, "split": True}
    assert set(acct.kept_docs) == {"d00000", "d00001", "d00003", "d00004"}


def test_recipe_buckets_route_to_the_chunk_layout(tmp_path):
    (tmp_path / "books").mkdir()
    raw = {"name": "stage2", "seq_len": K512, "sources": [{
        "name": "books", "reader": {"type": "books", "paths": ["books"]}, "packing": "best_fit",
        "buckets": [{"min_tokens": K512, "proportion": 0.5}, {"min_tokens": K64, "chunk_tokens": K64,
                                                                "proportion": 0.5}]}]}
    recipe = parse_recipe(raw, "stage2.yaml", tmp_path)
    b512, b64 = recipe.sources[0].buckets
    assert (b512.name, b512.chunk_tokens, b64.name, b64.chunk_tokens) == ("524288", K512, "65536", K64)
    for b in (b512, b64):  # length buckets chunk in best_fit mode too: their documents are >= a chunk
        packer = make_packer("best_fit", seq_len=K512, min_tokens=b.min_tokens, chunk_tokens=b.chunk_tokens,
                             acct=Ledgerish(), with_mask=False)
        assert isinstance(packer, ChunkPacker) and packer.per_row == K512 // b.chunk_tokens


def test_unknown_packing_mode_names_the_choices(tmp_path):
    import pytest

    from mixcraft.errors import UserError

    (tmp_path / "b").mkdir()
    raw = {"name": "x", "seq_len": 1024, "sources": [{"name": "b", "reader": {"type": "books", "paths": ["b"]},
                                                      "packing": "bestfit", "proportion": 1.0}]}
    with pytest.raises(UserError, match=r"sources\[b\]\.packing: expected one of prolong, best_fit, concat_chunk"):
        parse_recipe(raw, "x.yaml", tmp_path)
