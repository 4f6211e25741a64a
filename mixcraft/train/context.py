"""Context parallelism, DeepSpeed-Ulysses style: a row is split into N contiguous token slices,
one per rank of a context-parallel group, and attention swaps the split from tokens to heads.

Everything but attention (embeddings, norms, projections, MLP, the loss) works per token, so
each rank runs it on its own T/N tokens. Around attention, an all-to-all turns (T/N tokens, H
heads) into (T tokens, H/N heads): every rank then holds ALL tokens of its heads and runs the
ordinary document-masked kernel with the row's full `cu_seqlens`, so a document keeps exact
masking whichever ranks hold its tokens (ProLong's own sequence parallelism splits documents
across ranks: ProLong issue #17). A second all-to-all brings the output back to token slices.

Positions and targets are computed on the whole row before it is split, so RoPE and the
next-token labels at a slice boundary are those of the unsplit row. Each all-to-all moves
T/N x H x head_dim values per rank, the same as one projection's output.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor


class _SeqToHeads(torch.autograd.Function):
    """(T/N, H, D) token slice -> (T, H/N, D) head group; backward is the reverse all-to-all."""

    @staticmethod
    def forward(ctx, x: Tensor, group: dist.ProcessGroup) -> Tensor:
        ctx.group = group
        return _seq_to_heads(x, group)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _heads_to_seq(grad, ctx.group), None


class _HeadsToSeq(torch.autograd.Function):
    """(T, H/N, D) head group -> (T/N, H, D) token slice; backward is the reverse all-to-all."""

    @staticmethod
    def forward(ctx, x: Tensor, group: dist.ProcessGroup) -> Tensor:
        ctx.group = group
        return _heads_to_seq(x, group)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _seq_to_heads(grad, ctx.group), None


def _seq_to_heads(x: Tensor, group: dist.ProcessGroup) -> Tensor:
    n = dist.get_world_size(group)
    t_local, heads, dim = x.shape
    # Chunk j of the send buffer (head group j of my tokens) goes to rank j; chunk j of the
    # receive buffer is rank j's tokens of my head group, so concatenating gives token order.
    send = x.reshape(t_local, n, heads // n, dim).transpose(0, 1).contiguous()
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send, group=group)
    return recv.reshape(n * t_local, heads // n, dim)


def _heads_to_seq(x: Tensor, group: dist.ProcessGroup) -> Tensor:
    n = dist.get_world_size(group)
    t_full, heads_local, dim = x.shape
    send = x.reshape(n, t_full // n, heads_local, dim).contiguous()  # chunk j: rank j's tokens
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send, group=group)  # chunk j: head group j of my tokens
    return recv.transpose(0, 1).reshape(t_full // n, n * heads_local, dim)


def seq_to_heads(x: Tensor, group: dist.ProcessGroup) -> Tensor:
    return _SeqToHeads.apply(x, group)


def heads_to_seq(x: Tensor, group: dist.ProcessGroup) -> Tensor:
    return _HeadsToSeq.apply(x, group)


def kv_repeats(n_kv_heads: int, cp: int) -> int:
    """How many times to repeat each KV head so the KV heads split evenly over `cp` ranks while
    every query head still meets its own KV head: the smallest r with n_kv_heads * r % cp == 0
    (Llama-3-8B: 8 KV heads, cp 16 -> r = 2; cp <= 8 -> r = 1). The repeated heads are copies,
    so the result is exact; they only cost all-to-all volume."""
    return cp // math.gcd(n_kv_heads, cp)


def check_heads(n_heads: int, n_kv_heads: int, cp: int) -> str | None:
    """Why `cp` cannot split these heads, or None."""
    if n_heads % cp:
        return f"n_heads {n_heads} is not divisible by context_parallel {cp} (Ulysses splits query heads)"
    if n_heads % (n_kv_heads * kv_repeats(n_kv_heads, cp)):
        return f"n_kv_heads {n_kv_heads} cannot be spread over context_parallel {cp} with n_heads {n_heads}"
    return None


def slice_tokens(x: Tensor, cp_rank: int, cp: int) -> Tensor:
    """This rank's contiguous slice of a (T, ...) tensor; T must be a multiple of `cp`."""
    size = x.shape[0] // cp
    return x[cp_rank * size:(cp_rank + 1) * size]
