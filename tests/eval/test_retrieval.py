"""The harness tells a model that retrieves from one that does not (issue 14, item 5).

The retriever is a 2-layer, 64-dim Llama trained for 2,000 steps on a synthetic key-value
retrieval corpus (passkey documents over Python's documentation, 96-256 tokens, next-token loss;
`eval_fixtures.train_retriever`). Training takes ~5 minutes on 2 shared cores, so the default
suite evaluates the committed result (tests/eval/assets/retriever, bf16, 0.5 MB; rebuilt by
`python tests/eval/eval_fixtures.py`), and the slow suite trains it from scratch and checks the
same claim. Keys are drawn from other seeds than training's: retrieval, not memory (a random
5-digit key is guessed with probability 1e-5).
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
from eval_fixtures import ASSET, tiny_llama, train_retriever, train_tokenizer, write_build

from mixcraft.cli import main
from mixcraft.core.tokenize import load_tokenizer
from mixcraft.eval.config import EvalConfig
from mixcraft.eval.data import read_eval_manifest
from mixcraft.eval.harness import evaluate
from mixcraft.train.evaluate import LlamaScorer

SHORT = (128, 192, 256)
DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


def passkey_result(model, tok, build):
    cfg = EvalConfig(tasks=("passkey",), validation=False, lengths=SHORT, depths=DEPTHS, samples=4, seed=123)
    return evaluate(LlamaScorer(model, torch.device("cpu")), tok=tok, cfg=cfg, model_context=512,
                    data=read_eval_manifest(build), checkpoint="m")["tasks"]["passkey"]


@pytest.fixture(scope="module")
def asset_build(tmp_path_factory):
    return write_build(tmp_path_factory.mktemp("asset_build") / "out", load_tokenizer(str(ASSET)))


def test_trained_retriever_scores_high_through_the_command(tmp_path, monkeypatch, asset_build):
    out = tmp_path / "r.json"
    monkeypatch.setattr(sys, "argv", ["mixcraft", "eval", str(ASSET), "--data", str(asset_build), "--tasks",
                                      "passkey", "--lengths", "128,192,256", "--depths", "0,0.25,0.5,0.75,1",
                                      "--samples", "4", "--seed", "123", "--json", str(out)])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 0
    task = json.loads(out.read_text())["tasks"]["passkey"]
    assert task["n"] == 60
    assert all(acc >= 0.9 for acc in task["by_length"].values()), task["by_length"]
    assert min(c["accuracy"] for c in task["cells"]) >= 0.5, "some depth is not retrieved at all"


def test_random_model_scores_near_chance(asset_build):
    tok = load_tokenizer(str(ASSET))
    task = passkey_result(tiny_llama(tok.vocab_size, seed=7), tok, asset_build)
    assert task["n"] == 60
    assert task["accuracy"] <= 0.02
    assert min(c["answer_nll"] for c in task["cells"]) > 2.0  # ~ln(10) per digit: guessing


@pytest.mark.slow
def test_training_from_scratch_learns_to_retrieve(tmp_path):
    tok = train_tokenizer(tmp_path / "tok" / "tokenizer.json")
    build = write_build(tmp_path / "out", tok)
    untrained = passkey_result(tiny_llama(tok.vocab_size), tok, build)
    trained = passkey_result(train_retriever(tok), tok, build)
    assert untrained["accuracy"] <= 0.02
    assert all(acc >= 0.9 for acc in trained["by_length"].values()), trained["by_length"]
