"""Causal attention with document masking, from `cu_seqlens` (ProLong's varlen layout).

Three backends, picked once per run by `select_backend` and logged:
- `flash_attn`: the flash-attn package's `flash_attn_varlen_func` (CUDA, bf16/fp16).
- `varlen`: PyTorch's own FlashAttention kernel, `torch.nn.attention.varlen.varlen_attn`
  (torch >= 2.10, CUDA, bf16/fp16).
- `sdpa`: `scaled_dot_product_attention` with an explicit block-diagonal causal mask. Runs
  anywhere; memory is O(T^2), so it is the CPU and test path, not a 64K training path.
All take q (T, Hq, D), k and v (T, Hkv, D) and return (T, Hq, D).
"""

from __future__ import annotations

import functools
import importlib.util
import inspect

import torch
import torch.nn.functional as F
from torch import Tensor

from mixcraft.errors import UserError

BACKENDS = ("flash_attn", "varlen", "sdpa")


def available_backends(device: torch.device) -> list[str]:
    """Backends usable on `device`, fastest first."""
    found = []
    if device.type == "cuda":
        if importlib.util.find_spec("flash_attn") is not None:
            found.append("flash_attn")
        if _torch_varlen() is not None:
            found.append("varlen")
    found.append("sdpa")
    return found


def select_backend(requested: str, device: torch.device, where: str) -> str:
    """`auto` picks the fastest available; a named backend that cannot run here is a UserError."""
    found = available_backends(device)
    if requested == "auto":
        return found[0]
    if requested not in found:
        why = {
            "flash_attn": "needs a CUDA device and the flash-attn package (pip install flash-attn)",
            "varlen": "needs a CUDA device and torch >= 2.10 (torch.nn.attention.varlen)",
        }.get(requested, "is not a known backend")
        raise UserError(f"{where}: train.attention: '{requested}' {why}; available here: "
                        f"{', '.join(found)} (or use auto)")
    return requested


def block_causal_mask(cu_seqlens: Tensor, n_tokens: int) -> Tensor:
    """(T, T) bool mask, True where query i may attend to key j: same document and j <= i."""
    lengths = cu_seqlens[1:] - cu_seqlens[:-1]
    doc_id = torch.repeat_interleave(torch.arange(len(lengths), device=cu_seqlens.device), lengths)
    pos = torch.arange(n_tokens, device=cu_seqlens.device)
    return (doc_id[:, None] == doc_id[None, :]) & (pos[None, :] <= pos[:, None])


def doc_attention(backend: str, q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, max_seqlen: int,
                  mask: Tensor | None) -> Tensor:
    if backend == "flash_attn":
        return _flash_attn(q, k, v, cu_seqlens, max_seqlen)
    if backend == "varlen":
        return _torch_varlen_attn(q, k, v, cu_seqlens, max_seqlen)
    if mask is None:
        mask = block_causal_mask(cu_seqlens, q.shape[0])
    out = F.scaled_dot_product_attention(
        q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None],
        attn_mask=mask[None, None], enable_gqa=q.shape[1] != k.shape[1])
    return out[0].transpose(0, 1)


def _flash_attn(q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, max_seqlen: int) -> Tensor:
    from flash_attn import flash_attn_varlen_func

    dtype = q.dtype
    q, k, v = (_half(t) for t in (q, k, v))
    out = flash_attn_varlen_func(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, causal=True)
    return out.to(dtype)


@functools.cache
def _torch_varlen():
    """(varlen_attn, keyword names it accepts), or None on torch < 2.10."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn, frozenset(inspect.signature(varlen_attn).parameters)


def _torch_varlen_attn(q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, max_seqlen: int) -> Tensor:
    varlen_attn, params = _torch_varlen()
    kwargs = {}
    # The causal flag changed spelling across releases: is_causal (2.10/2.11), window_size (later).
    if "is_causal" in params:
        kwargs["is_causal"] = True
    else:
        kwargs["window_size"] = (-1, 0)
    if "enable_gqa" in params:
        kwargs["enable_gqa"] = True
    elif k.shape[1] != q.shape[1]:
        # No GQA in this release: repeat each KV head for its group of query heads.
        groups = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    dtype = q.dtype
    q, k, v = (_half(t) for t in (q, k, v))
    out = varlen_attn(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, **kwargs)
    return out.to(dtype)


def _half(t: Tensor) -> Tensor:
    # FlashAttention kernels take bf16/fp16 only; an fp32 run (precision: fp32) attends in bf16.
    return t if t.dtype in (torch.bfloat16, torch.float16) else t.to(torch.bfloat16)
