"""Document-masked attention: the SDPA fallback equals attention run on each document alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mixcraft.errors import UserError
from mixcraft.train.attention import available_backends, block_causal_mask, doc_attention, select_backend


def per_document(q, k, v, lengths):
    """Reference: causal attention on each document separately, KV heads repeated for GQA."""
    groups = q.shape[1] // k.shape[1]
    outs, start = [], 0
    for n in lengths:
        qd, kd, vd = (t[start:start + n].transpose(0, 1) for t in (q, k, v))
        kd, vd = kd.repeat_interleave(groups, 0), vd.repeat_interleave(groups, 0)
        outs.append(F.scaled_dot_product_attention(qd, kd, vd, is_causal=True).transpose(0, 1))
        start += n
    return torch.cat(outs)


def cu(lengths):
    return torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)


@pytest.mark.parametrize("lengths", [[5, 17, 1, 17], [40], [1, 1, 38]])
def test_sdpa_fallback_equals_per_document_attention(lengths):
    torch.manual_seed(0)
    n = sum(lengths)
    q, k, v = torch.randn(n, 4, 8), torch.randn(n, 2, 8), torch.randn(n, 2, 8)
    out = doc_attention("sdpa", q, k, v, cu(lengths), max(lengths), None)
    assert out.shape == (n, 4, 8)
    torch.testing.assert_close(out, per_document(q, k, v, lengths), atol=1e-6, rtol=1e-5)


def test_block_causal_mask_is_same_document_and_not_future():
    mask = block_causal_mask(cu([2, 3]), 5)
    expected = torch.tensor([
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 0, 1, 0, 0],
        [0, 0, 1, 1, 0],
        [0, 0, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(mask, expected)


def test_backend_selection_on_cpu():
    cpu = torch.device("cpu")
    assert available_backends(cpu) == ["sdpa"]
    assert select_backend("auto", cpu, "cfg.yaml") == (
        "sdpa", "auto: fastest available; not flash_attn or varlen: needs a CUDA device (this run is on cpu)")
    with pytest.raises(UserError, match=r"cfg.yaml: train.attention: 'varlen' needs a CUDA device"):
        select_backend("varlen", cpu, "cfg.yaml")
    with pytest.raises(UserError, match=r"'flash_attn' needs a CUDA device \(this run is on cpu\); available here: "
                                        r"sdpa \(or use auto\)"):
        select_backend("flash_attn", cpu, "cfg.yaml")


def test_auto_picks_flash_kernels_only_on_sm80_and_says_why():
    """A T4 (sm75) or V100 (sm70) has CUDA but no FlashAttention-2 kernels: auto falls back to
    SDPA and logs the reason; an sm80+ GPU gets varlen (torch >= 2.10) or flash_attn."""
    cuda = torch.device("cuda")
    backend, why = select_backend("auto", cuda, "cfg.yaml", capability=(7, 5))
    assert backend == "sdpa"
    assert why == ("auto: fastest available; not flash_attn or varlen: needs a GPU of compute capability sm80 or "
                   "newer (Ampere, Hopper); this one is sm75")
    with pytest.raises(UserError, match=r"'varlen' needs a GPU of compute capability sm80 or newer"):
        select_backend("varlen", cuda, "cfg.yaml", capability=(7, 0))
    backend, why = select_backend("auto", cuda, "cfg.yaml", capability=(9, 0))
    assert backend in ("flash_attn", "varlen"), why
    assert available_backends(cuda, capability=(8, 0))[-1] == "sdpa" and len(available_backends(cuda, (8, 0))) >= 2


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["flash_attn", "varlen"])
def test_gpu_backends_match_fallback(backend):
    device = torch.device("cuda")
    if backend not in available_backends(device):
        pytest.skip(f"{backend} not available here")
    torch.manual_seed(0)
    lengths = [300, 1000, 7, 741]
    n = sum(lengths)
    q, k, v = (torch.randn(n, h, 64, device=device, dtype=torch.bfloat16) for h in (8, 2, 2))
    cu_seqlens = cu(lengths).to(device)
    fast = doc_attention(backend, q, k, v, cu_seqlens, max(lengths), None)
    ref = doc_attention("sdpa", q.float(), k.float(), v.float(), cu_seqlens, max(lengths), None)
    torch.testing.assert_close(fast.float(), ref, atol=2e-2, rtol=2e-2)
