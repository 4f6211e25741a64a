"""Llama: RMSNorm, SwiGLU, grouped-query attention, RoPE with a configurable base (ABF).

Module and parameter names follow transformers' `LlamaForCausalLM` (without its `model.`
prefix), so loading and exporting HF checkpoints is a rename, not a conversion, and the RoPE
layout is HF's rotate-half. The model works on one flat stream of packed tokens of shape (T,);
documents are delimited by `cu_seqlens` and attention never crosses them. Under context
parallelism (context.py) a rank holds T/N of those tokens and `cu_seqlens` still describes
the whole row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from mixcraft.train.attention import block_causal_mask, doc_attention
from mixcraft.train.context import heads_to_seq, kv_repeats, seq_to_heads
from mixcraft.train.loss import chunked_cross_entropy


@dataclass
class ModelArgs:
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    vocab_size: int
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    init_std: float = 0.02
    max_seq_len: int = 8192

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def block_params(self) -> int:
        """Parameters of one transformer block (attention, MLP, two norms)."""
        kv_dim = self.n_kv_heads * self.head_dim
        return self.dim * (2 * self.dim + 2 * kv_dim) + 3 * self.dim * self.ffn_dim + 2 * self.dim

    def root_params(self) -> int:
        """Parameters outside the blocks: embeddings, final norm, lm_head (unless tied)."""
        return self.vocab_size * self.dim * (1 if self.tie_embeddings else 2) + self.dim

    def n_params(self) -> int:
        return self.n_layers * self.block_params() + self.root_params()

    def matmul_params(self) -> int:
        """Parameters that take part in a matmul per token: everything but the embedding lookup."""
        kv_dim = self.n_kv_heads * self.head_dim
        attn = self.dim * (2 * self.dim + 2 * kv_dim)
        mlp = 3 * self.dim * self.ffn_dim
        return self.n_layers * (attn + mlp) + self.vocab_size * self.dim


def rope_inv_freq(args: ModelArgs, device: torch.device | None = None) -> Tensor:
    """Inverse frequencies, with Llama 3's long-context rescaling when `rope_scaling` asks for it."""
    exponents = torch.arange(0, args.head_dim, 2, dtype=torch.int64, device=device).float() / args.head_dim
    inv_freq = 1.0 / (args.rope_theta ** exponents)
    scaling = args.rope_scaling or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return inv_freq
    # "llama3" (Llama 3.1/3.2 checkpoints): same formula as transformers' _compute_llama3_parameters.
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_len = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old_len / high) * ~(wavelen > old_len / low)
    return torch.where(medium, smoothed, scaled)


def rope_cos_sin(position_ids: Tensor, args: ModelArgs, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """cos/sin of shape (T, head_dim), computed in fp32 then cast like HF does."""
    inv_freq = rope_inv_freq(args, position_ids.device)
    freqs = position_ids.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x: (T, heads, head_dim). HF's rotate-half layout, so HF q/k weights load unpermuted."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos[:, None, :] + rotated * sin[:, None, :]


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        # Normalize in fp32 even under bf16: the mean of squares over 4096 dims loses bits otherwise.
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = args.n_heads, args.n_kv_heads, args.head_dim
        self.q_proj = nn.Linear(args.dim, args.n_heads * args.head_dim, bias=False)
        self.k_proj = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=False)
        self.v_proj = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=False)
        self.o_proj = nn.Linear(args.n_heads * args.head_dim, args.dim, bias=False)
        self.backend = "sdpa"
        self.cp_group: dist.ProcessGroup | None = None  # context-parallel group (None: whole rows)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cu_seqlens: Tensor, max_seqlen: int,
                mask: Tensor | None) -> Tensor:
        n_tokens = x.shape[0]
        q = self.q_proj(x).view(n_tokens, self.n_heads, self.head_dim)
        k = self.k_proj(x).view(n_tokens, self.n_kv_heads, self.head_dim)
        v = self.v_proj(x).view(n_tokens, self.n_kv_heads, self.head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.cp_group is None:
            out = doc_attention(self.backend, q, k, v, cu_seqlens, max_seqlen, mask)
        else:
            out = self._context_parallel(q, k, v, cu_seqlens, max_seqlen, mask)
        return self.o_proj(out.reshape(n_tokens, -1))

    def _context_parallel(self, q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, max_seqlen: int,
                          mask: Tensor | None) -> Tensor:
        """Ulysses: token slices -> head groups over the whole row, attend, and back."""
        group = self.cp_group
        repeats = kv_repeats(self.n_kv_heads, dist.get_world_size(group))
        if repeats > 1:  # fewer KV heads than ranks: copies, so every rank's query heads have theirs
            k, v = k.repeat_interleave(repeats, dim=1), v.repeat_interleave(repeats, dim=1)
        q, k, v = (seq_to_heads(t, group) for t in (q, k, v))
        out = doc_attention(self.backend, q, k, v, cu_seqlens, max_seqlen, mask)
        return heads_to_seq(out, group)


class MLP(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.gate_proj = nn.Linear(args.dim, args.ffn_dim, bias=False)
        self.up_proj = nn.Linear(args.dim, args.ffn_dim, bias=False)
        self.down_proj = nn.Linear(args.ffn_dim, args.dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.input_layernorm = RMSNorm(args.dim, args.norm_eps)
        self.self_attn = Attention(args)
        self.post_attention_layernorm = RMSNorm(args.dim, args.norm_eps)
        self.mlp = MLP(args)
        self.activation_checkpointing = False

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cu_seqlens: Tensor, max_seqlen: int,
                mask: Tensor | None) -> Tensor:
        if self.activation_checkpointing and torch.is_grad_enabled():
            # Keep only the block input; recompute the rest in backward. At 64K tokens an 8B
            # block's activations are ~10 GiB, its input 0.5 GiB.
            return checkpoint(self._forward, x, cos, sin, cu_seqlens, max_seqlen, mask, use_reentrant=False)
        return self._forward(x, cos, sin, cu_seqlens, max_seqlen, mask)

    def _forward(self, x, cos, sin, cu_seqlens, max_seqlen, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cu_seqlens, max_seqlen, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.embed_tokens = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList(Block(args) for _ in range(args.n_layers))
        self.norm = RMSNorm(args.dim, args.norm_eps)
        self.lm_head = nn.Linear(args.dim, args.vocab_size, bias=False)
        if args.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.attention_backend = "sdpa"
        self.loss_chunk_tokens = 2048
        self.cp_group: dist.ProcessGroup | None = None

    def configure(self, *, attention: str, activation_checkpointing: bool, loss_chunk_tokens: int,
                  cp_group: dist.ProcessGroup | None = None) -> None:
        """Attention backend, checkpointing, loss block size, and the context-parallel group
        (None: this rank holds whole rows)."""
        self.attention_backend = attention
        self.loss_chunk_tokens = loss_chunk_tokens
        self.cp_group = cp_group
        for block in self.layers:
            block.self_attn.backend = attention
            block.self_attn.cp_group = cp_group
            block.activation_checkpointing = activation_checkpointing

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """N(0, init_std) for matrices and embeddings, ones for norms (HF's Llama init)."""
        for name, param in self.named_parameters():
            if name.endswith("norm.weight"):
                param.fill_(1.0)
            else:
                param.normal_(0.0, self.args.init_std, generator=generator)

    def forward(self, input_ids: Tensor, position_ids: Tensor, cu_seqlens: Tensor, max_seqlen: int,
                targets: Tensor | None = None) -> Tensor:
        """With `targets`: the summed cross-entropy over valid targets (chunked; no full logits).
        Without: fp32 logits of shape (T, vocab), for evaluation and tests. Under context
        parallelism the tensors are this rank's token slice and `cu_seqlens` the whole row's."""
        h = self.embed_tokens(input_ids)
        cos, sin = rope_cos_sin(position_ids, self.args, h.dtype)
        row_tokens = h.shape[0] * (dist.get_world_size(self.cp_group) if self.cp_group is not None else 1)
        # The SDPA fallback needs an explicit (T, T) mask; build it once, not once per layer.
        mask = block_causal_mask(cu_seqlens, row_tokens) if self.attention_backend == "sdpa" else None
        for block in self.layers:
            h = block(h, cos, sin, cu_seqlens, max_seqlen, mask)
        h = self.norm(h)
        if targets is None:
            return self.lm_head(h).float()
        return chunked_cross_entropy(h, self.lm_head.weight, targets, self.loss_chunk_tokens)
