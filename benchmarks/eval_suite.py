"""The default evaluation suite on a 1B-shaped Llama at 8K-64K: wall time against the issue's
10-minute goal, and achieved TFLOP/s against the device's bf16 peak, measured in one run.

The model is Llama-3.2-1B's shape (16 layers, dim 2048, 32 heads / 8 KV heads, ffn 8192,
Llama-3 vocabulary) with random weights: the cost does not depend on the weights. The haystack
is the build's text with `--data OUT`, else RULER's noise sentences; validation rows need
`--data`. Needs a CUDA device for the real numbers (not yet run: no GPU was lent when it was
written); `--dim 128 --layers 2 --lengths 1K,2K --device cpu` checks the script itself.

    python benchmarks/eval_suite.py --data out/demo
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from mixcraft.core.tokenize import load_tokenizer
from mixcraft.eval.cli_options import eval_config
from mixcraft.eval.data import read_eval_manifest
from mixcraft.eval.harness import evaluate
from mixcraft.train.attention import select_backend
from mixcraft.train.evaluate import LlamaScorer
from mixcraft.train.metrics import PEAK_BF16_TFLOPS
from mixcraft.train.model import Llama, ModelArgs

GOAL_S = 600.0


def forward_flops(args: ModelArgs, n_tokens: int, sum_sq: int) -> float:
    """Dense matmuls (head excluded: tasks score a handful of positions) plus causal attention
    per document, forward only: 2 x params x tokens + 2 x layers x heads x head_dim x sum(L^2).
    With --data, the head over every validation position is left out: an undercount."""
    dense = 2.0 * (args.matmul_params() - args.vocab_size * args.dim) * n_tokens
    return dense + 2.0 * args.n_layers * args.n_heads * args.head_dim * sum_sq


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path)
    p.add_argument("--lengths", default=None, help="default 8K,16K,32K,64K")
    p.add_argument("--samples", type=int, default=None)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--device", default="cuda")
    a = p.parse_args()
    device = torch.device(a.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    tok = load_tokenizer("llama3")
    args = ModelArgs(dim=a.dim, n_layers=a.layers, n_heads=a.dim // 64, n_kv_heads=max(1, a.dim // 256),
                     ffn_dim=4 * a.dim, vocab_size=tok.vocab_size, rope_theta=500000.0, max_seq_len=131072,
                     tie_embeddings=True)
    with torch.device(device):
        model = Llama(args)
    model.init_weights()
    model.to(dtype).eval()
    model.configure(attention=select_backend("auto", device, "benchmark"), activation_checkpointing=False,
                    loss_chunk_tokens=2048)
    cfg = eval_config(tasks=None, lengths=a.lengths or "8K,16K,32K,64K", depths=None, samples=a.samples,
                      validation_rows=None, seed=0)
    data = read_eval_manifest(a.data) if a.data else None
    counts = {"tokens": 0, "sum_sq": 0}
    scorer = LlamaScorer(model, device)

    def counting(batch):
        lens = (batch.cu_seqlens[1:] - batch.cu_seqlens[:-1]).long()
        counts["tokens"] += batch.n_tokens
        counts["sum_sq"] += int((lens * lens).sum())
        return scorer(batch)

    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    result = evaluate(counting, tok=tok, cfg=cfg, model_context=args.max_seq_len, data=data, checkpoint="random")
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    flops = forward_flops(args, counts["tokens"], counts["sum_sq"])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = next((tf for key, tf in PEAK_BF16_TFLOPS if key in name), None)
    print(f"{name}: {sum(q.numel() for q in model.parameters()) / 1e9:.2f}B params, attention "
          f"{model.attention_backend}, lengths {result['meta']['lengths']}, {result['meta']['forward_passes']} "
          f"forward passes, {counts['tokens']:,} tokens")
    print(f"  wall {wall:.1f} s; goal {GOAL_S:.0f} s: {wall / GOAL_S:.2f}x of the budget "
          f"({'met' if wall <= GOAL_S else 'MISSED'})")
    print(f"  {flops / 1e15:.1f} PFLOP forward, {flops / wall / 1e12:.1f} TFLOP/s achieved"
          + (f", {flops / wall / 1e12 / peak:.0%} of the {peak:.0f} TFLOP/s bf16 peak" if peak else ""))
    print(f"  peak memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB" if device.type == "cuda" else "")


if __name__ == "__main__":
    main()
