"""The per-rank memory estimate: what fits at 512K, that its activation count matches what
autograd really keeps, and that the run warns and picks the leaner gradient reduction."""

from __future__ import annotations

import pytest
import torch
from train_fixtures import read_metrics, tiny_config

from mixcraft.train import run_train
from mixcraft.train.attention import block_causal_mask
from mixcraft.train.memory import GIB, activation_bytes_per_token, estimate_memory
from mixcraft.train.model import Llama, ModelArgs

LLAMA3_8B = ModelArgs(dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, ffn_dim=14336, vocab_size=128256)
H100 = 80e9  # "80 GB"


def prolong_512k(cp: int, unsharded_grads: bool):
    return estimate_memory(LLAMA3_8B, world=8, cp=cp, tokens_per_micro=524288, compute_bytes=2,
                           activation_checkpointing=True, loss_chunk_tokens=2048, sdpa=False,
                           unsharded_grads=unsharded_grads, capacity=H100, cuda=True)


def test_llama3_8b_at_512k_fits_8_gpus_with_cp8_and_not_without():
    assert LLAMA3_8B.n_params() == 8_030_261_248  # Meta's count for Llama-3-8B
    with_cp = prolong_512k(8, unsharded_grads=False)
    assert with_cp.fits and with_cp.total / GIB == pytest.approx(58.6, abs=0.5)
    assert with_cp.tokens_per_rank == 65536
    # Without context parallelism the checkpointed block inputs alone are 128 GiB per GPU.
    without = prolong_512k(1, unsharded_grads=False)
    assert not without.fits
    assert 32 * 524288 * 4096 * 2 / GIB == 128 and without.parts["activations"] / GIB > 128
    # Keeping unsharded fp32 gradients between micro-batches (30 GiB) would not fit at 512K.
    assert not prolong_512k(8, unsharded_grads=True).fits
    assert with_cp.line().startswith("memory per rank (estimate, 65,536 tokens/rank): weights 3.7 + grads 3.7 + "
                                     "AdamW 7.5 + gathered 3.6 + activations")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n_kv_heads", [8, 2])
def test_activation_count_matches_what_autograd_saves(dtype, n_kv_heads):
    """Sum the tensors one block saves for backward (hooked) and compare with the estimate."""
    args = ModelArgs(dim=256, n_layers=1, n_heads=8, n_kv_heads=n_kv_heads, ffn_dim=688, vocab_size=1000)
    model = Llama(args).to(dtype)
    model.configure(attention="sdpa", activation_checkpointing=False, loss_chunk_tokens=64)
    n = 512
    x = torch.randn(n, args.dim, dtype=dtype, requires_grad=True)
    cos, sin = torch.ones(n, args.head_dim, dtype=dtype), torch.zeros(n, args.head_dim, dtype=dtype)
    cu = torch.tensor([0, 200, n], dtype=torch.int32)
    skip = {p.data_ptr() for p in model.parameters()} | {x.data_ptr(), cos.data_ptr(), sin.data_ptr()}
    saved: dict[int, int] = {}

    def pack(t):
        if t.numel() >= n and t.dtype != torch.bool and t.data_ptr() not in skip:
            saved[t.data_ptr()] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.layers[0](x, cos, sin, cu, 312, block_causal_mask(cu, n))
    measured = sum(saved.values()) / n
    assert measured > 0
    assert activation_bytes_per_token(args, dtype.itemsize) == pytest.approx(measured, rel=0.10)


def test_run_warns_and_reduces_every_micro_batch_when_memory_is_short(tmp_path, mixture, capsys, monkeypatch):
    """With 2 micro-batches per step, auto keeps unsharded gradients only if they fit: a device
    too small for them gets every-micro-batch reduction, and a warning line with the fixes."""
    import mixcraft.train.setup as setup

    run_train(tiny_config(tmp_path, mixture, name="roomy", train={"steps": 2}))
    roomy = capsys.readouterr()
    assert "gradients reduced once per step, after 2 micro-batches (auto: unsharded gradients fit)" in roomy.out
    assert "warning" not in roomy.err
    monkeypatch.setattr(setup, "device_capacity", lambda device, local_world: 3e6)  # 3 MB
    run_train(tiny_config(tmp_path, mixture, name="short", train={"steps": 2}))
    short = capsys.readouterr()
    assert "gradients reduced after every micro-batch (auto: keeping 0.0 GiB of unsharded fp32 gradients would " \
           "not fit)" in short.out
    warning = [line for line in short.err.splitlines() if "warning: estimated" in line]
    assert len(warning) == 1 and "expect an out-of-memory error. To fit: set train.activation_checkpointing: " \
                                 "true; raise train.context_parallel" in warning[0]
    # Either way the step is the same sum: losses agree to float rounding.
    for a, b in zip(read_metrics(tmp_path / "roomy"), read_metrics(tmp_path / "short"), strict=True):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-6) and b["grad_norm"] == pytest.approx(a["grad_norm"],
                                                                                                    rel=1e-5)
