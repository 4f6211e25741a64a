"""The document of every span: `Row.doc_ids`/`doc_offsets` from every packer, written as the
`doc_ids`/`doc_offsets` MDS columns, read back by streaming; off, the shards are ProLong's bytes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from packhelp import Ledgerish, synthetic_docs

from mixcraft.core.pack import make_packer, pack_all, subset_has_mask
from mixcraft.mds import DOC_COLUMNS, SubsetWriter, columns_for, iter_rows, row_of

SEQ_LEN = 1024
# Short, row-sized and long documents: every packer splits some and packs several into one row.
LENGTHS = [300, 5000, 40, 1024, 700, 2500, 90, 1500, 3300, 10, 800, 1100] * 3

MODES = [("prolong", 0), ("best_fit", 0), ("concat_chunk", 0), ("prolong", 512)]


def _rows(mode: str, min_tokens: int, docs):
    packer = make_packer(mode, seq_len=SEQ_LEN, min_tokens=min_tokens, chunk_tokens=256 if min_tokens else SEQ_LEN,
                         acct=Ledgerish(), with_mask=subset_has_mask(mode, min_tokens, False), pad_id=7)
    rows = list(pack_all(packer, docs))
    assert rows, "fixture produced no rows"
    return rows


@pytest.mark.parametrize(("mode", "min_tokens"), MODES)
def test_every_span_names_its_document_and_where_in_it_the_piece_starts(mode, min_tokens):
    docs = synthetic_docs(LENGTHS)
    by_id = {d.doc_id: d for d in docs}
    rows = _rows(mode, min_tokens, docs)
    mid_document = padded = 0
    for row in rows:
        assert len(row.doc_ids) == len(row.doc_offsets) == len(row.spans)
        for (a, b), doc_id, (start, n_tokens) in zip(row.spans.tolist(), row.doc_ids, row.doc_offsets, strict=True):
            if doc_id == "":
                assert (start, n_tokens) == (0, 0) and b == len(row.input_ids) and row.padding == b - a
                padded += 1
                continue
            doc = by_id[doc_id]
            assert n_tokens == len(doc.ids)
            assert np.array_equal(row.input_ids[a:b], doc.ids[start:start + b - a]), "the piece is those tokens"
            mid_document += start > 0
    assert mid_document, "some piece must continue a document (not vacuous)"
    assert padded == (mode == "best_fit" and sum(r.padding > 0 for r in rows)), "padding only under best_fit"


def _write(tmp_path, rows, *, doc_ids: bool, compression="zstd"):
    writer = SubsetWriter(tmp_path, domain="d", with_mask=rows[0].mask is not None, compression=compression,
                          size_limit=1 << 26, doc_ids=doc_ids)
    for row in rows:
        writer.write(row)
    writer.finish()
    return tmp_path


def test_the_columns_round_trip_through_streaming(tmp_path):
    from streaming import StreamingDataset

    rows = _rows("best_fit", 0, synthetic_docs(LENGTHS))
    out = _write(tmp_path / "sub", rows, doc_ids=True)
    index = json.loads((out / "index.json").read_text())
    assert set(DOC_COLUMNS) <= set(index["shards"][0]["column_names"])
    back = [row_of(r) for r in iter_rows(out)]
    assert [(r.doc_ids, r.doc_offsets, r.padding) for r in back] == [(r.doc_ids, r.doc_offsets, r.padding)
                                                                      for r in rows]
    ds = StreamingDataset(remote=str(out), local=str(tmp_path / "cache"), shuffle=False, batch_size=1)
    for i in (0, ds.num_samples - 1):
        sample = ds[i]
        assert json.loads(sample["doc_ids"]) == list(rows[i].doc_ids)
        assert sample["doc_offsets"].reshape(-1, 2).tolist() == [list(p) for p in rows[i].doc_offsets]


def test_off_the_shards_are_prolongs_columns_byte_for_byte(tmp_path):
    """doc_ids off: exactly what MDSWriter writes for ProLong's columns (no doc columns at all)."""
    from streaming import MDSWriter

    rows = _rows("prolong", 0, synthetic_docs(LENGTHS))
    ours = _write(tmp_path / "ours", rows, doc_ids=False, compression="none")
    theirs = tmp_path / "theirs"
    with MDSWriter(out=str(theirs), columns=columns_for(False), compression=None, hashes=["sha1"],
                   size_limit=1 << 26) as w:
        for r in rows:
            w.write({"input_ids": r.input_ids, "indices": r.spans, "domain": "d", "length": len(r.input_ids)})
    names = sorted(p.name for p in theirs.iterdir())
    assert names == sorted(p.name for p in ours.iterdir()) and "shard.00000.mds" in names
    for name in names:
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name


def test_rows_without_ids_get_no_doc_columns(tmp_path):
    """A row rebuilt from spans alone (as the pre-mix copies rows) cannot name documents; the
    subset then has ProLong's columns rather than made-up ids."""
    rows = _rows("prolong", 0, synthetic_docs(LENGTHS))
    bare = [row_of({"input_ids": r.input_ids, "indices": r.spans}) for r in rows]
    out = _write(tmp_path / "bare", bare, doc_ids=True)
    assert "doc_ids" not in json.loads((out / "index.json").read_text())["shards"][0]["column_names"]
    with pytest.raises(ValueError, match="a row of 2 spans has 0 document ids"):
        _write(tmp_path / "mixed", [rows[0], *[r for r in bare if len(r.spans) == 2][:1]], doc_ids=True)


def test_the_recipe_key_turns_the_columns_off(mix_corpus, tmp_path, run_cli):
    """`output: {doc_ids: false}`: ProLong's columns only, the same rows, and inspect says so."""
    from mixcorpus import build_recipe, source, write_recipe

    def build(name, **output):
        recipe = write_recipe(tmp_path / f"{name}.yaml", {
            "name": name, "seed": 1, "seq_len": 1024, "total_tokens": 8000, "output": output,
            "sources": [source("docs", "text", mix_corpus["short"], proportion=1.0)]})
        build_recipe(recipe, tmp_path / name)
        return tmp_path / name / "docs" / "1024"

    on, off = build("on"), build("off", doc_ids=False)
    names = json.loads((off / "index.json").read_text())["shards"][0]["column_names"]
    assert names == sorted(columns_for(False)), "ProLong's columns, nothing else"
    rows_on, rows_off = list(iter_rows(on)), list(iter_rows(off))
    assert len(rows_on) == len(rows_off) > 0
    for a, b in zip(rows_on, rows_off, strict=True):
        assert np.array_equal(a["input_ids"], b["input_ids"]) and np.array_equal(a["indices"], b["indices"])
    res = run_cli("inspect", off.parent.parent, "--row", 0)
    assert "documents not recorded" in res.stdout


def test_the_trainer_reads_rows_with_doc_columns_as_without(small_build, tmp_path):
    """The bundled trainer's collate takes what it needs by name: the same batch with the doc
    columns as without them."""
    import torch
    from streaming import StreamingDataset

    from mixcraft.train.data import pack_rows

    out, manifest = small_build
    stream = next(s for s in manifest["streams"] if s["source"] == "chat")
    ds = StreamingDataset(remote=str(out / stream["path"]), local=str(tmp_path / "cache"), shuffle=False, batch_size=1)
    samples = [ds[i] for i in range(min(3, ds.num_samples))]
    assert all(set(DOC_COLUMNS) <= set(s) for s in samples), "the build wrote the doc columns"
    bare = [{k: v for k, v in s.items() if k not in DOC_COLUMNS} for s in samples]
    with_ids, without = pack_rows(samples, crop_tokens=None, vocab_size=128_256), pack_rows(bare, crop_tokens=None,
                                                                                             vocab_size=128_256)
    for name in ("input_ids", "targets", "position_ids", "cu_seqlens"):
        assert torch.equal(getattr(with_ids, name), getattr(without, name)), name
