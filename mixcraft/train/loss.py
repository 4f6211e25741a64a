"""Cross-entropy in token blocks, so the full (T, vocab) logits never exist.

At 64K tokens and Llama 3's 128,256-token vocabulary the logits alone are 16 GiB in bf16 and
32 GiB once upcast for the softmax. Each block's logits are built, reduced to a loss and
dropped; `checkpoint` rebuilds one block at a time in backward (ProLong uses 2,048-token
blocks: 1 GiB of fp32 logits).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

IGNORE = -100


def chunked_cross_entropy(hidden: Tensor, weight: Tensor, targets: Tensor, chunk_tokens: int) -> Tensor:
    """Sum (not mean) of cross-entropy over targets != -100. hidden (T, D), weight (V, D), targets (T,).

    Returning the sum lets the caller divide by the valid-token count of the whole step, across
    ranks and accumulation steps, so every token weighs the same however the batch is split.
    """
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], chunk_tokens):
        end = start + chunk_tokens
        total = total + checkpoint(_block_loss, hidden[start:end], weight, targets[start:end],
                                   use_reentrant=False)
    return total


def _block_loss(hidden: Tensor, weight: Tensor, targets: Tensor) -> Tensor:
    logits = F.linear(hidden, weight).float()
    return F.cross_entropy(logits, targets, ignore_index=IGNORE, reduction="sum")
