"""Memory per rank, estimated before the first step, so a run that cannot fit says so at start
instead of dying on an out-of-memory error minutes later.

The estimate counts what this trainer keeps per rank (bytes):
- fp32 master weights, fp32 gradients and AdamW's two fp32 moments, sharded over all ranks:
  16 x params / world;
- unsharded fp32 gradients kept between micro-batches when gradients are reduced once per step:
  4 x params;
- weights gathered for compute: the root (embeddings, lm_head) stays gathered; two blocks (the
  running one and the prefetched one) plus their gradients in flight;
- activations for this rank's tokens (row tokens / context_parallel): with checkpointing, each
  block's input plus one block being recomputed; without, every block's saved tensors;
- the loss: the final hidden states and one block of fp32 logits and their gradient;
- the SDPA fallback's (T, T) boolean mask; a fixed 2 GiB for the CUDA context and allocator.
It is an estimate, good to about 15%: allocator fragmentation and kernel workspaces vary.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from mixcraft.train.model import ModelArgs

GIB = 2**30
CUDA_RUNTIME_BYTES = 2 * GIB
FIT_FRACTION = 0.95  # of device memory; the rest is left to fragmentation
BACKWARD_TRANSIENT = 1.5  # a block's backward holds its gradients next to its saved tensors


@dataclass(frozen=True)
class MemoryEstimate:
    parts: dict[str, float]  # bytes per rank, by what holds them
    tokens_per_rank: int
    capacity: float | None  # bytes per device (None: unknown)

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    @property
    def fits(self) -> bool:
        return self.capacity is None or self.total <= FIT_FRACTION * self.capacity

    def line(self) -> str:
        parts = " + ".join(f"{name} {size / GIB:.1f}" for name, size in self.parts.items() if size)
        of = f" of {self.capacity / GIB:.1f} GiB" if self.capacity else ""
        return (f"memory per rank (estimate, {self.tokens_per_rank:,} tokens/rank): {parts} = "
                f"{self.total / GIB:.1f} GiB{of}")


def activation_bytes_per_token(args: ModelArgs, compute_bytes: int, kv_repeat: int = 1) -> float:
    """Tensors one block saves for backward, per token: norm inputs (fp32 copies), q/k/v before
    and after RoPE and the all-to-all, the attention output, and the MLP's gate, up, silu and
    product (4 x ffn_dim)."""
    kv = args.n_kv_heads * args.head_dim * kv_repeat
    per_token = compute_bytes * (6 * args.dim + 3 * kv + 4 * args.ffn_dim)
    return per_token + 2 * 4 * args.dim  # the two RMSNorms keep fp32 copies of their input


def estimate_memory(args: ModelArgs, *, world: int, cp: int, tokens_per_micro: int, compute_bytes: int,
                    activation_checkpointing: bool, loss_chunk_tokens: int, sdpa: bool, unsharded_grads: bool,
                    capacity: float | None, cuda: bool, kv_repeat: int = 1) -> MemoryEstimate:
    """Bytes per rank for a micro-batch of `tokens_per_micro` tokens split over `cp` ranks."""
    n_params = args.n_params()
    tokens = tokens_per_micro // cp
    per_token = activation_bytes_per_token(args, compute_bytes, kv_repeat)
    block_working = BACKWARD_TRANSIENT * per_token * tokens
    if activation_checkpointing:
        activations = args.n_layers * tokens * args.dim * compute_bytes + block_working
    else:
        activations = args.n_layers * per_token * tokens + (BACKWARD_TRANSIENT - 1) * per_token * tokens
    parts = {
        "weights": 4.0 * n_params / world,
        "grads": 4.0 * n_params / world,
        "AdamW": 8.0 * n_params / world,
        "unsharded grads": 4.0 * n_params if unsharded_grads else 0.0,
        "gathered": compute_bytes * (args.root_params() + 4 * args.block_params()),
        "activations": activations,
        "loss": tokens * args.dim * (compute_bytes + 4) + 2 * 4 * min(loss_chunk_tokens, tokens) * args.vocab_size,
        "sdpa mask": float(tokens_per_micro) ** 2 if sdpa else 0.0,
        "runtime": CUDA_RUNTIME_BYTES if cuda else 0.0,
    }
    return MemoryEstimate(parts, tokens, capacity)


def device_capacity(device: torch.device, local_world: int) -> float | None:
    """Bytes one rank may use: the GPU's memory, or on CPU the machine's RAM shared by the
    ranks on this node."""
    if device.type == "cuda":
        return float(torch.cuda.get_device_properties(device).total_memory)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / max(1, local_world)
    except (ValueError, OSError, AttributeError):
        return None
