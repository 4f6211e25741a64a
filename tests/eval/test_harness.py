"""The harness end to end on a small build: loss per source and by position equal a manual
per-token computation, task cells aggregate exactly, and the validation split is the one read."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from eval_fixtures import tiny_llama

from mixcraft.eval.config import EvalConfig
from mixcraft.eval.data import read_eval_manifest
from mixcraft.eval.harness import evaluate
from mixcraft.eval.scoring import IGNORE, Scores, Share
from mixcraft.mds import SubsetReader
from mixcraft.train.evaluate import LlamaScorer

KEYS = {"validation", "position_loss", "tasks", "meta"}


def manual_losses(model, subset, rows, edges):
    """Per row: full logits of the row, next-token targets that never cross a document piece,
    each target charged to its token's position in its piece."""
    per_bucket = [[] for _ in range(len(edges) - 1)]
    reader = SubsetReader(subset)
    for n in rows:
        row = reader.row(n)
        ids = torch.tensor(row["input_ids"].astype(np.int64))
        spans = np.asarray(row["indices"]).reshape(-1, 2)
        cu = torch.tensor([0] + [int(b) for _, b in spans], dtype=torch.int32)
        pos = torch.cat([torch.arange(b - a) for a, b in spans])
        with torch.no_grad():
            logits = model(ids, pos, cu, int((spans[:, 1] - spans[:, 0]).max()))
        for t in range(len(ids) - 1):
            if pos[t + 1] == 0:  # the next token starts a new piece: nothing to predict from here
                continue
            loss = F.cross_entropy(logits[t][None], ids[t + 1][None]).item()
            k = next(k for k in range(len(edges) - 1) if edges[k] <= pos[t + 1] < edges[k + 1])
            per_bucket[k].append(loss)
    return per_bucket


def test_position_loss_and_validation_equal_a_manual_per_token_computation(build, tiny_tok):
    model = tiny_llama(tiny_tok.vocab_size, seed=3)
    cfg = EvalConfig(tasks=(), validation_rows=2, position_bucket=32)
    result = evaluate(LlamaScorer(model, torch.device("cpu")), tok=tiny_tok, cfg=cfg, model_context=512,
                      data=read_eval_manifest(build), checkpoint="random")
    assert set(result) == KEYS
    pos, val = result["position_loss"], result["validation"]
    assert pos["edges"] == [0, 32, 64, 128, 256]
    assert val["split"] == "last_rows" and "no validation split" in val["note"]
    for source in ("manual", "reference"):
        buckets = manual_losses(model, build / source / "256", [4, 5], pos["edges"])
        assert sum(len(b) for b in buckets) == val["sources"][source]["tokens"] > 400
        assert sum(1 for b in buckets if b) == 4, "every bucket should hold tokens"
        for k, losses in enumerate(buckets):
            assert pos["sources"][source]["tokens"][k] == len(losses)
            assert pos["sources"][source]["loss"][k] == pytest.approx(np.mean(losses), abs=1e-5)
        flat = [x for b in buckets for x in b]
        assert val["sources"][source]["loss"] == pytest.approx(np.mean(flat), abs=1e-5)


def test_a_build_with_a_validation_split_is_scored_on_it(build_with_val, tiny_tok):
    model = tiny_llama(tiny_tok.vocab_size, seed=3)
    cfg = EvalConfig(tasks=(), validation_rows=0, position_bucket=64)
    result = evaluate(LlamaScorer(model, torch.device("cpu")), tok=tiny_tok, cfg=cfg, model_context=512,
                      data=read_eval_manifest(build_with_val), checkpoint="random")
    val = result["validation"]
    assert val["split"] == "validation" and "held out" in val["note"]
    for source in ("manual", "reference"):
        n_rows = len(SubsetReader(build_with_val / source / "256" / "val"))
        assert val["sources"][source]["rows"] == n_rows > 0
        buckets = manual_losses(model, build_with_val / source / "256" / "val", range(n_rows),
                                result["position_loss"]["edges"])
        assert val["sources"][source]["loss"] == pytest.approx(np.mean([x for b in buckets for x in b]), abs=1e-5)
    assert "validation rows" in result["meta"]["haystack"]


class DepthOracle:
    """A scorer that answers right exactly when the passkey needle sits in the first half of the
    haystack (it reads the input), so the accuracy of every cell is known in advance."""

    def __init__(self, tok):
        self.tok = tok
        self.calls = 0

    def __call__(self, batch):
        self.calls += 1
        hit = torch.zeros(batch.n_tokens, dtype=torch.bool)
        cu = batch.cu_seqlens.tolist()
        for a, b in zip(cu, cu[1:], strict=False):
            text = self.tok.decode(batch.input_ids[a:b].tolist())
            body = text.index("I will quiz you about it.\n")
            needle, question = text.index("The pass key is"), text.rindex("\nWhat is the pass key?")
            if (needle - body) / (question - body) < 0.5:
                hit[a:b] = batch.targets[a:b] != IGNORE
        return Scores(torch.zeros(batch.n_tokens), hit)


def test_task_cells_aggregate_exactly_and_short_samples_share_a_forward(build, tiny_tok):
    cfg = EvalConfig(tasks=("passkey",), validation=False, lengths=(256, 512), depths=(0.0, 0.25, 0.75, 1.0),
                     samples=3, tokens_per_forward=1024)
    oracle = DepthOracle(tiny_tok)
    result = evaluate(oracle, tok=tiny_tok, cfg=cfg, model_context=512, data=read_eval_manifest(build),
                      checkpoint="oracle")
    task = result["tasks"]["passkey"]
    assert [(c["length"], c["depth"], c["accuracy"], c["n"]) for c in task["cells"]] == [
        (n, d, 1.0 if d < 0.5 else 0.0, 3) for n in (256, 512) for d in (0.0, 0.25, 0.75, 1.0)]
    assert task["accuracy"] == 0.5 and task["by_length"] == {"256": 0.5, "512": 0.5}
    # 12 samples of 256 tokens, 4 to a 1024-token forward; 12 of 512, 2 to a forward.
    assert oracle.calls == result["meta"]["forward_passes"] == 3 + 6
    assert result["validation"]["sources"] == {} and result["validation"]["split"] is None


def test_two_ranks_get_the_same_result_as_one(build, tiny_tok):
    """Each rank scores its share; their sums meet in one all-reduce (here: added by hand)."""
    cfg = EvalConfig(tasks=("passkey", "niah_single"), lengths=(256,), depths=(0.0, 1.0), samples=2,
                     validation_rows=1, position_bucket=64)
    model = tiny_llama(tiny_tok.vocab_size, seed=1)
    data = read_eval_manifest(build)
    scorer = LlamaScorer(model, torch.device("cpu"))
    one = evaluate(scorer, tok=tiny_tok, cfg=cfg, model_context=512, data=data, checkpoint="m")
    partial = {}

    def capture(rank):
        def reduce(vec):
            partial[rank] = vec
            return vec
        return reduce

    for rank in (0, 1):
        evaluate(scorer, tok=tiny_tok, cfg=cfg, model_context=512, data=data, checkpoint="m",
                 share=Share(rank, 2, capture(rank)))
    both = evaluate(scorer, tok=tiny_tok, cfg=cfg, model_context=512, data=data, checkpoint="m",
                    share=Share(0, 2, lambda vec: partial[0] + partial[1]))
    assert _close(both["validation"], one["validation"])
    assert _close(both["position_loss"], one["position_loss"])
    assert both["tasks"] == one["tasks"]
    assert not torch.equal(partial[0], partial[1])  # the ranks really did different work


def _close(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == pytest.approx(b, rel=1e-9)
    return a == b
