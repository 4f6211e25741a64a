"""Cross-entropy in token blocks, so the full (T, vocab) logits never exist.

At 64K tokens and Llama 3's 128,256-token vocabulary the logits alone are 16 GiB in bf16 and
32 GiB once upcast for the softmax. Each block's logits are built, reduced to a loss and
dropped; backward rebuilds one block at a time (ProLong uses 2,048-token blocks: 1 GiB of fp32
logits).

The lm_head gradient is the sum of one (vocab, dim) product per block. Left to autograd under
bf16 that sum is kept in bf16, and its rounding error grows with the block count: measured
relative error 7.6e-3 with 32 blocks against 2.4e-3 for one unchunked product. Here the
blocks' products are summed in an fp32 buffer and rounded to the weight's dtype once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE = -100


def chunked_cross_entropy(hidden: Tensor, weight: Tensor, targets: Tensor, chunk_tokens: int) -> Tensor:
    """Sum (not mean) of cross-entropy over targets != -100. hidden (T, D), weight (V, D), targets (T,).

    Returning the sum lets the caller divide by the valid-token count of the whole step, across
    ranks and accumulation steps, so every token weighs the same however the batch is split.
    """
    return _ChunkedCrossEntropy.apply(hidden, weight, targets, chunk_tokens)


class _ChunkedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, targets: Tensor, chunk_tokens: int) -> Tensor:
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk_tokens):
            logits = F.linear(hidden[start:start + chunk_tokens], weight).float()
            total += F.cross_entropy(logits, targets[start:start + chunk_tokens], ignore_index=IGNORE, reduction="sum")
        ctx.save_for_backward(hidden, weight, targets)
        ctx.chunk_tokens = chunk_tokens
        return total

    @staticmethod
    def backward(ctx, grad_total: Tensor):
        hidden, weight, targets = ctx.saved_tensors
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        for start in range(0, hidden.shape[0], ctx.chunk_tokens):
            h, t = hidden[start:start + ctx.chunk_tokens], targets[start:start + ctx.chunk_tokens]
            # d(sum CE)/d logits = softmax - onehot(target) on valid rows, 0 on ignored ones.
            grad_logits = torch.softmax(F.linear(h, weight).float(), dim=-1)
            valid = t != IGNORE
            grad_logits[torch.arange(len(t), device=t.device)[valid], t[valid]] -= 1.0
            grad_logits[~valid] = 0.0
            grad_logits = (grad_logits * grad_total).to(hidden.dtype)
            grad_hidden[start:start + ctx.chunk_tokens] = grad_logits @ weight
            _add_product_fp32(grad_weight, grad_logits.t(), h)
        return grad_hidden, grad_weight.to(weight.dtype), None, None


def _add_product_fp32(out: Tensor, a: Tensor, b: Tensor) -> None:
    """out (fp32) += a @ b, with a and b in the compute dtype. On CUDA a bf16 matmul writes its
    fp32 accumulator out directly (`out_dtype`); CPU kernels lack that, so they multiply in fp32."""
    if a.dtype == torch.float32:
        out.addmm_(a, b)
    elif a.is_cuda:
        out += torch.mm(a, b, out_dtype=torch.float32)
    else:
        out.addmm_(a.float(), b.float())
