"""Reading the build output: batches from the real StreamingDataset, mixing, masking, resume."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from train_fixtures import open_loader, write_mixture

from mixcraft.errors import UserError
from mixcraft.train.data import (
    batch_from_rows,
    batches_forever,
    choose_streams,
    close_loader,
    pack_rows,
    read_manifest,
)


@pytest.fixture
def loader_for(tmp_path):
    """open_loader with a fresh cache folder per test."""
    return lambda out, **kw: open_loader(out, tmp_path / "cache", **kw)


def take(loader, n):
    gen = batches_forever(loader)
    out = [next(gen) for _ in range(n)]
    gen.close()
    return out


def check_batch(batch):
    ids, targets, pos = batch.input_ids.numpy(), batch.targets.numpy(), batch.position_ids.numpy()
    cu = batch.cu_seqlens.numpy()
    assert cu[0] == 0 and cu[-1] == len(ids) and np.all(np.diff(cu) > 0)
    doc_of = np.repeat(np.arange(len(cu) - 1), np.diff(cu))
    valid = np.flatnonzero(targets != -100)
    assert len(valid), "fixture produced no targets"
    # No target crosses a document: t and t+1 are in the same document piece ...
    assert np.all(doc_of[valid] == doc_of[valid + 1])
    assert np.array_equal(targets[valid], ids[valid + 1])
    # ... and exactly the last position of every piece has no target.
    assert len(ids) - len(valid) == len(cu) - 1
    assert np.array_equal(pos, np.arange(len(ids)) - cu[doc_of])
    assert batch.max_seqlen == np.diff(cu).max()
    assert batch.sum_sq_doc_lens == int((np.diff(cu).astype(np.int64) ** 2).sum())


def test_batches_flatten_rows_into_documents(mixture, loader_for):
    loader = loader_for(mixture, rows=2)
    batches = take(loader, 6)
    close_loader(loader)
    for batch in batches:
        assert batch.n_rows == 2 and batch.n_tokens == 512
        check_batch(batch)
    assert any(len(b.cu_seqlens) > 4 for b in batches), "fixture rows should hold several documents"


def test_sft_mask_removes_targets(tmp_path, loader_for):
    out = write_mixture(tmp_path / "sft", rows=4, sft=True, streams=(("chat", "256", 1.0),))
    loader = loader_for(out)
    batch = take(loader, 1)[0]
    close_loader(loader)
    # The fixture masks the first half of each piece: the targets left are in second halves only.
    cu, targets = batch.cu_seqlens.numpy(), batch.targets.numpy()
    for a, b in zip(cu[:-1], cu[1:], strict=True):
        first_half = targets[a:(a + b) // 2 - 1]
        assert np.all(first_half == -100)
        assert np.all(targets[(a + b) // 2:b - 1] != -100)


def test_pack_rows_accepts_flattened_indices_and_crops():
    ids = np.arange(10, dtype=np.uint32)
    flat = np.array([0, 4, 4, 4, 4, 7, 7, 10], dtype=np.uint32)  # with an empty piece at 4
    batch = pack_rows([{"input_ids": ids, "indices": flat, "domain": "d"}], crop_tokens=6, vocab_size=16)
    assert batch.cu_seqlens.tolist() == [0, 4, 6]
    assert batch.targets.tolist() == [1, 2, 3, -100, 5, -100]
    assert batch.position_ids.tolist() == [0, 1, 2, 3, 0, 1]


def test_bad_rows_are_user_errors():
    ids = np.arange(10, dtype=np.uint32)
    with pytest.raises(UserError, match=r"domain 'books': `indices` spans do not tile the row"):
        pack_rows([{"input_ids": ids, "indices": np.array([[0, 4], [5, 10]]), "domain": "books"}],
                  crop_tokens=None, vocab_size=16)
    with pytest.raises(UserError, match=r"token id 9 >= model vocab_size 8"):
        pack_rows([{"input_ids": ids, "indices": np.array([[0, 10]]), "domain": "books"}],
                  crop_tokens=None, vocab_size=8)


def test_mixture_follows_proportions(mixture, loader_for):
    loader = loader_for(mixture, rows=1)
    # One epoch: 48 rows (24 per stream) drawn 60% books / 40% code, as the manifest asks.
    domains = Counter(sample["domain"] for sample in loader.dataset)
    close_loader(loader)
    assert sum(domains.values()) == 48
    assert abs(domains["books"] - 0.6 * 48) <= 1 and abs(domains["code"] - 0.4 * 48) <= 1


def test_proportion_override_selects_streams(mixture):
    streams = choose_streams(read_manifest(mixture, "cfg"), {"books/256": 1.0}, "cfg: data.proportions")
    assert [s.name for s in streams] == ["books/256"]
    with pytest.raises(UserError, match=r"cfg: data.proportions.book/256: no such stream in the manifest"):
        choose_streams(read_manifest(mixture, "cfg"), {"book/256": 1.0}, "cfg: data.proportions")


def test_loader_resumes_mid_epoch_and_across_epochs(tmp_path, loader_for):
    out = write_mixture(tmp_path / "small", rows=5)  # 10 rows per epoch: 12 batches cross one epoch
    loader = loader_for(out)
    straight = [b.input_ids.tolist() for b in take(loader, 12)]
    close_loader(loader)
    for stop in (4, 10):
        loader = loader_for(out)
        first = [b.input_ids.tolist() for b in take(loader, stop)]
        state = json.loads(json.dumps(loader.state_dict()))
        close_loader(loader)
        loader = loader_for(out)
        loader.load_state_dict(state)
        rest = [b.input_ids.tolist() for b in take(loader, 12 - stop)]
        close_loader(loader)
        assert first + rest == straight, f"resume after {stop} batches changed the data order"


def test_missing_manifest_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=r"cfg: data.path: .*manifest.json not found; .*mixcraft build"):
        read_manifest(tmp_path, "cfg: data.path")
    (tmp_path / "manifest.json").write_text(json.dumps({"streams": [{"path": "a/b"}]}))
    with pytest.raises(UserError, match=r"manifest.json: manifest version 1 .*rebuild"):
        read_manifest(tmp_path, "cfg: data.path")


def test_worker_processes_give_the_same_batches_and_resume(mixture, loader_for):
    def run(workers, n, state=None):
        loader = loader_for(mixture, workers=workers)
        if state is not None:
            loader.load_state_dict(state)
        firsts = [int(b.input_ids[0]) for b in take(loader, n)]
        state = loader.state_dict()
        close_loader(loader)
        return firsts, state

    serial, _ = run(0, 10)
    parallel, _ = run(2, 10)
    head, state = run(2, 4)
    tail, _ = run(2, 6, state)
    assert parallel == serial and head + tail == serial


def test_rows_round_trip_rebuilds_the_batch(mixture, loader_for):
    """The (rows, 3, L) tensor that ranks exchange carries everything: cu_seqlens come back from
    the positions, including document pieces that continue from the previous row."""
    loader = loader_for(mixture, rows=3)
    batches = take(loader, 3)
    close_loader(loader)
    for batch in batches:
        rows = batch.rows()
        assert rows.shape == (3, 3, 256) and rows.dtype == torch.int32
        back = batch_from_rows(rows)
        for name in ("input_ids", "targets", "position_ids", "cu_seqlens"):
            assert torch.equal(getattr(back, name), getattr(batch, name)), name
        assert (back.max_seqlen, back.n_rows, back.sum_sq_doc_lens) == (batch.max_seqlen, 3, batch.sum_sq_doc_lens)


def test_a_file_url_reads_the_same_rows(mixture, tmp_path):
    """data.path may be an fsspec URL: the manifest comes through fsspec, the shards through
    streaming's remote= into the cache folder."""
    from train_fixtures import open_loader

    local = open_loader(mixture, tmp_path / "a")
    want = [b.input_ids.tolist() for b in take(local, 4)]
    close_loader(local)
    remote = open_loader(f"file://{mixture}", tmp_path / "b")
    got = [b.input_ids.tolist() for b in take(remote, 4)]
    close_loader(remote)
    assert got == want
    assert read_manifest(f"file://{mixture}", "cfg").streams[0].url == f"file://{mixture}/books/256"
    with pytest.raises(UserError, match=r"cfg: data.path: file:///nowhere/manifest.json not found"):
        read_manifest("file:///nowhere", "cfg: data.path")
