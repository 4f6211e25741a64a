"""GPU-only checks, run when an accelerator is lent (`make test-gpu`): the fast attention
backend is picked and trains in bf16 with the same loss as the CPU path."""

from __future__ import annotations

import pytest
import torch
from train_fixtures import read_metrics, tiny_config

from mixcraft.train import run_train

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def need_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")


def test_trains_on_gpu_with_a_varlen_backend(tmp_path, mixture, capsys):
    run_train(tiny_config(tmp_path, mixture, train={"steps": 20, "activation_checkpointing": True}))
    out = capsys.readouterr().out
    assert "world 1 x cuda | bfloat16" in out
    assert "attention sdpa " not in out, "a FlashAttention backend should be chosen on CUDA"
    losses = [r["loss"] for r in read_metrics(tmp_path / "run")]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3
    assert read_metrics(tmp_path / "run")[-1]["mfu"] is not None or "mfu n/a" in out


def test_gpu_first_loss_matches_cpu(tmp_path, mixture):
    for device in ("cpu", "cuda"):
        run_train(tiny_config(tmp_path, mixture, name=device, train={"steps": 1, "device": device}))
    cpu, gpu = read_metrics(tmp_path / "cpu")[0]["loss"], read_metrics(tmp_path / "cuda")[0]["loss"]
    assert gpu == pytest.approx(cpu, rel=2e-2)  # bf16 vs fp32, same weights and rows
