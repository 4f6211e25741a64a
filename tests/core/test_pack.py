import numpy as np
import pytest

from mixcraft.core.pack import ChunkPacker, GreedyPacker, TokDoc, check_row, pack_all


class Acct:
    """Records each document's fate; `was_kept`/`was_dropped` map doc id -> details."""

    def __init__(self):
        self.was_kept, self.was_dropped = {}, {}

    def _once(self, doc):
        assert doc.doc_id not in self.was_kept and doc.doc_id not in self.was_dropped, "fate reported twice"

    def kept(self, doc, *, packed, tail, split):
        self._once(doc)
        self.was_kept[doc.doc_id] = (packed, tail, split)

    def dropped(self, doc, reason, tokens):
        self._once(doc)
        self.was_dropped[doc.doc_id] = (reason, tokens)


def docs_with_lengths(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [TokDoc(f"d{i}", rng.integers(0, 1000, n).astype(np.uint32)) for i, n in enumerate(lengths)]


def _accounted(docs, acct):
    """Every document has exactly one fate, and tokens add up."""
    assert set(acct.was_kept) | set(acct.was_dropped) == {d.doc_id for d in docs}
    for d in docs:
        if d.doc_id in acct.was_kept:
            packed, tail, _ = acct.was_kept[d.doc_id]
            assert packed + tail == len(d.ids) and packed > 0


def test_greedy_rows_are_full_and_spans_cover_them():
    docs = docs_with_lengths(np.random.default_rng(1).integers(1, 300, 200))
    acct = Acct()
    rows = list(pack_all(GreedyPacker(256, acct), docs))
    assert len(rows) > 50, "fixture produced too few rows"
    for row in rows:
        assert check_row(row, 256) == []
        assert row.spans[-1][1] == len(row.input_ids) == 256
    _accounted(docs, acct)
    packed = sum(v[0] for v in acct.was_kept.values())
    assert packed == 256 * len(rows)
    # concatenating the rows gives the documents back in order
    stream = np.concatenate([r.input_ids for r in rows])
    assert np.array_equal(stream, np.concatenate([d.ids for d in docs])[: len(stream)])


def test_greedy_final_partial_row_is_counted_not_silent():
    docs = docs_with_lengths([100, 100, 100])
    acct = Acct()
    rows = list(pack_all(GreedyPacker(256, acct), docs))
    assert len(rows) == 1
    assert acct.was_kept["d0"] == (100, 0, False) and acct.was_kept["d1"] == (100, 0, False)
    assert acct.was_kept["d2"] == (56, 44, False)  # one piece packed, its 44-token tail counted
    docs = docs_with_lengths([100, 100, 100, 30])
    acct = Acct()
    list(pack_all(GreedyPacker(256, acct), docs))
    assert acct.was_dropped["d3"] == ("final_partial_row", 30)


def test_greedy_split_flag_when_a_doc_spans_rows():
    docs = docs_with_lengths([200, 200, 200])
    acct = Acct()
    rows = list(pack_all(GreedyPacker(256, acct), docs))
    assert len(rows) == 2
    assert acct.was_kept["d1"][2] is True  # 56 tokens in row 0, 144 in row 1
    assert rows[1].spans.tolist() == [[0, 144], [144, 256]]


def test_greedy_budget_caps_a_huge_document():
    docs = docs_with_lengths([5000])
    acct = Acct()
    packer = GreedyPacker(256, acct)
    rows = list(packer.add(docs[0], max_tokens=600)) + list(packer.finish())
    assert len(rows) == 3  # 600 tokens rounded up to whole rows
    assert acct.was_kept["d0"] == (768, 5000 - 768, True)


@pytest.mark.parametrize("seq_len,chunk", [(256, 256), (512, 64)])
def test_chunk_packer_cuts_long_docs_and_counts_tails(seq_len, chunk):
    docs = docs_with_lengths([1000, 64, 30, 700, 2000])
    acct = Acct()
    rows = list(pack_all(ChunkPacker(chunk, seq_len, acct), docs))
    assert rows, "fixture produced no rows"
    per_row = seq_len // chunk
    for row in rows:
        assert check_row(row, seq_len) == []
        assert len(row.spans) == per_row
        assert all(b - a == chunk for a, b in row.spans.tolist())
    assert acct.was_dropped["d2"] == ("shorter_than_chunk", 30)
    _accounted(docs, acct)
    assert sum(v[0] for v in acct.was_kept.values()) == seq_len * len(rows)


def test_eight_64_chunks_in_a_512_row_keep_document_order():
    docs = docs_with_lengths([64 * 5, 64 * 3 + 10])
    acct = Acct()
    rows = list(pack_all(ChunkPacker(64, 512, acct), docs))
    assert len(rows) == 1
    expected = np.concatenate([docs[0].ids, docs[1].ids[: 64 * 3]])
    assert np.array_equal(rows[0].input_ids, expected)
    assert acct.was_kept["d1"] == (192, 10, True)


def test_mask_follows_tokens():
    d = TokDoc("c", np.arange(10, dtype=np.uint32), np.array([0, 0, 1, 1, 1, 0, 0, 1, 1, 1], dtype=np.uint8))
    acct = Acct()
    rows = list(pack_all(GreedyPacker(5, acct, with_mask=True), [d]))
    assert [r.mask.tolist() for r in rows] == [[0, 0, 1, 1, 1], [0, 0, 1, 1, 1]]


def test_check_row_reports_faults():
    from mixcraft.core.pack import Row

    row = Row(np.zeros(10, dtype=np.uint32), np.array([[0, 4], [5, 10]], dtype=np.uint32))
    assert "spans are not contiguous" in check_row(row, 10)
    row = Row(np.zeros(10, dtype=np.uint32), np.array([[0, 4], [4, 9]], dtype=np.uint32))
    assert any("last span ends at 9" in f for f in check_row(row))
