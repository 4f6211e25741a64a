"""The arithmetic under the harness: position buckets, packing, rank shares, sums, answer matching,
and the Llama scorer against full logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from eval_fixtures import tiny_llama

from mixcraft.eval.scoring import (
    IGNORE,
    Share,
    Tally,
    batch_greedily,
    bucket_of,
    exact_match,
    pack_documents,
    position_edges,
    sample_arrays,
    substring_match,
)
from mixcraft.train.evaluate import LlamaScorer


def test_position_edges_double_from_1k_to_the_row_length():
    assert position_edges(8192) == [0, 1024, 2048, 4096, 8192]
    assert position_edges(65536) == [0, 1024, 2048, 4096, 8192, 16384, 32768, 65536]
    assert position_edges(3000) == [0, 1024, 2048, 3000]
    assert position_edges(512) == [0, 512]
    assert list(bucket_of(np.array([0, 1023, 1024, 5000, 8191]), position_edges(8192))) == [0, 0, 1, 3, 3]


def test_batches_stay_within_budget_and_keep_order():
    sizes = [300, 500, 200, 900, 100, 100, 1200]
    groups = batch_greedily(sizes, 1000)
    assert [i for g in groups for i in g] == list(range(len(sizes)))
    assert all(sum(sizes[i] for i in g) <= 1000 for g in groups if len(g) > 1)
    assert groups[-1] == [6]  # larger than the budget: alone


@pytest.mark.parametrize("n_items,world", [(7, 2), (8, 4), (3, 4), (1, 1)])
def test_ranks_share_items_once_each_and_make_equal_forward_counts(n_items, world):
    shares = [Share(rank, world).mine(n_items) for rank in range(world)]
    assert len({len(s) for s in shares}) == 1
    real = sorted(i for s in shares for i in s if i is not None)
    assert real == list(range(n_items))


def test_tally_sums_partials_of_all_ranks():
    parts = []
    for rank in range(3):
        t = Tally()
        for key in [("a",), ("b", 1)]:
            t.register(key)
        t.add(("a",), rank + 1)
        t.add(("b", 1), 10 * rank)
        parts.append(t)
    vecs = [torch.tensor(t.values, dtype=torch.float64) for t in parts]
    total = parts[0].reduce(lambda v: sum(vecs))
    assert total == {("a",): 6.0, ("b", 1): 30.0}


def test_packed_documents_restart_positions_and_score_only_the_answer():
    a = sample_arrays(np.array([5, 6, 7]), np.array([8, 9]))
    b = sample_arrays(np.array([1, 2]), np.array([3]))
    assert list(a[1]) == [IGNORE, IGNORE, 8, 9, IGNORE]
    packed = pack_documents([a, b])
    assert packed.cu_seqlens.tolist() == [0, 5, 8]
    assert packed.position_ids.tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    assert packed.max_seqlen == 5


def test_answer_matching_follows_squad_normalisation():
    assert exact_match("The  Eiffel Tower.", ["eiffel tower"])
    assert not exact_match("It is the Eiffel Tower", ["eiffel tower"])
    assert substring_match("It is the Eiffel Tower", ["eiffel tower", "paris"])
    assert not substring_match("London", ["Paris"])
    assert not substring_match("anything", ["..."])  # an answer that normalises to nothing matches nothing


def test_llama_scorer_equals_full_logits_and_builds_no_full_logits(tiny_tok):
    torch.manual_seed(0)
    model = tiny_llama(tiny_tok.vocab_size)
    rng = np.random.default_rng(0)
    docs = []
    for n in (40, 70, 25):
        ids = rng.integers(0, tiny_tok.vocab_size, n)
        targets = np.where(rng.random(n) < 0.5, np.append(ids[1:], IGNORE), IGNORE)
        docs.append((ids, targets, np.arange(n)))
    batch = pack_documents(docs)
    seen = []
    handle = model.lm_head.register_forward_hook(lambda m, args, out: seen.append(out.shape[0]))
    scores = LlamaScorer(model, torch.device("cpu"))(batch)
    handle.remove()
    assert seen == [1]  # the head saw one row, not 135
    with torch.no_grad():
        logits = model(batch.input_ids, batch.position_ids, batch.cu_seqlens, batch.max_seqlen)
    want = batch.targets != IGNORE
    assert want.sum() > 20
    ref = F.cross_entropy(logits[want], batch.targets[want], reduction="none")
    assert torch.allclose(scores.nll[want], ref, atol=1e-5)
    assert torch.equal(scores.hit[want], logits[want].argmax(-1) == batch.targets[want])
    assert not scores.hit[~want].any() and (scores.nll[~want] == 0).all()
