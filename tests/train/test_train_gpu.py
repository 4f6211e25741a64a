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


def test_context_parallel_on_two_gpus(tmp_path, mixture):
    """NCCL all-to-all around the varlen kernel: CP=2 on 2 GPUs trains like one GPU (bf16)."""
    from train_fixtures import torchrun

    if torch.cuda.device_count() < 2:
        pytest.skip(f"needs 2 GPUs, found {torch.cuda.device_count()}")
    one = tiny_config(tmp_path, mixture, name="one", train={"steps": 4})
    two = tiny_config(tmp_path, mixture, name="two", train={"steps": 4, "context_parallel": 2})
    proc = torchrun(two, 2)
    assert "context parallel 2" in proc.stdout and "attention sdpa " not in proc.stdout
    run_train(one)
    for a, b in zip(read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two"), strict=True):
        assert b["loss"] == pytest.approx(a["loss"], abs=2e-2)


def test_lm_head_gradient_in_fp32_on_cuda():
    """The CUDA path of the loss's fp32 accumulation (torch.mm with out_dtype)."""
    import torch.nn.functional as F

    from mixcraft.train.loss import chunked_cross_entropy

    torch.manual_seed(0)
    h64 = torch.randn(4096, 256, dtype=torch.float64, device="cuda") * 0.5
    w64 = torch.randn(3000, 256, dtype=torch.float64, device="cuda") * 0.05
    targets = torch.randint(0, 3000, (4096,), device="cuda")
    w = w64.clone().requires_grad_()
    F.cross_entropy(h64 @ w.T, targets, reduction="sum").backward()
    exact = w.grad
    h, w = h64.to(torch.bfloat16), w64.to(torch.bfloat16).requires_grad_()
    chunked_cross_entropy(h, w, targets, 128).backward()
    assert ((w.grad.double() - exact).norm() / exact.norm()).item() < 4e-3
