"""GPU-only checks for evaluation, run when an accelerator is lent (`make test-gpu`). They have
not run yet: no GPU was lent to the session that wrote them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from eval_fixtures import ASSET, write_build

from mixcraft.core.tokenize import load_tokenizer
from mixcraft.eval.config import EvalConfig
from mixcraft.eval.data import read_eval_manifest
from mixcraft.eval.harness import evaluate
from mixcraft.eval.haystack import Haystack
from mixcraft.eval.scoring import pack_documents, sample_arrays
from mixcraft.eval.tasks import Kit, passkey
from mixcraft.train.evaluate import KVGenerator, LlamaScorer, greedy_without_cache, load_model

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def need_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")


def test_gpu_scores_like_cpu_with_a_flash_backend(tmp_path):
    tok = load_tokenizer(str(ASSET))
    build = write_build(tmp_path / "out", tok)
    cfg = EvalConfig(tasks=("passkey",), lengths=(128, 256), depths=(0.0, 0.5, 1.0), samples=4, validation_rows=2,
                     position_bucket=64)
    results = {}
    for device in ("cpu", "cuda"):
        dev = torch.device(device)
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        model, _ = load_model(ASSET, config=None, device=dev, dtype=dtype)
        if device == "cuda":
            assert model.attention_backend != "sdpa", "a FlashAttention backend should be chosen on CUDA"
        results[device] = evaluate(LlamaScorer(model, dev), tok=tok, cfg=cfg, model_context=512,
                                   data=read_eval_manifest(build), checkpoint=device)
    cpu, gpu = results["cpu"], results["cuda"]
    assert gpu["tasks"]["passkey"]["accuracy"] >= 0.9
    for source, val in cpu["validation"]["sources"].items():
        assert gpu["validation"]["sources"][source]["loss"] == pytest.approx(val["loss"], rel=2e-2)  # bf16


def test_kv_generation_on_gpu_equals_greedy_without_cache():
    tok = load_tokenizer(str(ASSET))
    dev = torch.device("cuda")
    model, _ = load_model(ASSET, config=None, device=dev, dtype=torch.float32)
    sample = passkey(Kit(tok, Haystack.noise(tok)), np.random.default_rng(0), 200, 0.5)
    prompt = [int(t) for t in sample.context]
    gen = KVGenerator(model, dev, torch.float32, stop_ids=[])
    assert gen(prompt, 6) == greedy_without_cache(model, prompt, 6)
    batch = pack_documents([sample_arrays(sample.context, sample.answer)])
    forced = bool(LlamaScorer(model, dev)(batch).hit[batch.targets != -100].all())
    assert forced == (gen(prompt, len(sample.answer)) == [int(t) for t in sample.answer])
