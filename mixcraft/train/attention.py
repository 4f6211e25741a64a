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


# FlashAttention-2 kernels (flash-attn's and PyTorch's varlen) need Ampere (sm80) or newer.
MIN_FLASH_CAPABILITY = (8, 0)


def available_backends(device: torch.device, capability: tuple[int, int] | None = None) -> list[str]:
    """Backends usable on `device`, fastest first. `capability` defaults to the device's."""
    return [name for name in BACKENDS if unavailable_reason(name, device, capability) is None]


def unavailable_reason(backend: str, device: torch.device, capability: tuple[int, int] | None = None) -> str | None:
    """Why `backend` cannot run on `device`, or None if it can."""
    if backend == "sdpa":
        return None
    if device.type != "cuda":
        return f"needs a CUDA device (this run is on {device.type})"
    capability = capability or torch.cuda.get_device_capability(device)
    if tuple(capability) < MIN_FLASH_CAPABILITY:
        return (f"needs a GPU of compute capability sm80 or newer (Ampere, Hopper); this one is "
                f"sm{capability[0]}{capability[1]}")
    if backend == "flash_attn" and importlib.util.find_spec("flash_attn") is None:
        return "needs the flash-attn package (pip install flash-attn)"
    if backend == "varlen" and _torch_varlen() is None:
        return "needs torch >= 2.10 (torch.nn.attention.varlen)"
    return None


def select_backend(requested: str, device: torch.device, where: str,
                   capability: tuple[int, int] | None = None) -> tuple[str, str]:
    """(backend, why it was picked). `auto` picks the fastest that can run here and says why the
    faster ones cannot; a named backend that cannot run here is a UserError."""
    if requested == "auto":
        skipped: dict[str, list[str]] = {}  # reason -> the faster backends it rules out
        for name in BACKENDS:
            why = unavailable_reason(name, device, capability)
            if why is None:
                notes = "".join(f"; not {' or '.join(names)}: {why}" for why, names in skipped.items())
                return name, f"auto: fastest available{notes}"
            skipped.setdefault(why, []).append(name)
    why = unavailable_reason(requested, device, capability)
    if why is not None:
        found = available_backends(device, capability)
        raise UserError(f"{where}: train.attention: '{requested}' {why}; available here: "
                        f"{', '.join(found)} (or use auto)")
    return requested, "as configured"


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
