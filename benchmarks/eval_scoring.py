"""How much work scoring a needle task takes, three ways, on one sample of the same model:

- teacher-forced: one forward pass over context + gold answer (what `mixcraft eval` does for the
  synthetic tasks: greedy reproduces the answer iff the argmax matches at every answer token);
- KV-cached greedy generation (what it does for user JSONL tasks): the context once, then one
  token per step;
- greedy generation without a cache: the whole sequence again for every generated token (the
  cost the issue rules out).

Prints seconds per sample and the ratios, measured in one run, and checks that the three agree
on whether the answer is produced. CPU by default (a Llama of 4 layers x 256 dims, the Llama-3
vocabulary); `--device cuda --dim 2048 --layers 16` approximates a 1B model on a GPU.

    python benchmarks/eval_scoring.py --length 4096
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from mixcraft.core.tokenize import load_tokenizer
from mixcraft.eval.haystack import Haystack
from mixcraft.eval.scoring import pack_documents, sample_arrays
from mixcraft.eval.tasks import Kit, passkey
from mixcraft.train.evaluate import KVGenerator, LlamaScorer, greedy_without_cache
from mixcraft.train.model import Llama, ModelArgs


def timed(fn, rounds: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    a = parser.parse_args()
    device = torch.device(a.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    tok = load_tokenizer("llama3")
    args = ModelArgs(dim=a.dim, n_layers=a.layers, n_heads=a.dim // 64, n_kv_heads=max(1, a.dim // 256),
                     ffn_dim=a.dim * 4, vocab_size=tok.vocab_size, max_seq_len=a.length)
    model = Llama(args)
    model.init_weights(torch.Generator().manual_seed(0))
    model.to(device=device, dtype=dtype).eval()
    from pydoc_data.topics import topics  # Python's documentation: real prose, in every CPython

    pieces = [tok.encode(topics[k]) for k in sorted(topics)]
    sample = passkey(Kit(tok, Haystack(tok, pieces, origin="pydoc")), np.random.default_rng(0), a.length, 0.5)
    batch = pack_documents([sample_arrays(sample.context, sample.answer)])
    prompt = [int(t) for t in sample.context]
    n_new = len(sample.answer)
    scorer = LlamaScorer(model, device)
    generator = KVGenerator(model, device, dtype, stop_ids=[])
    t_forced, scores = timed(lambda: scorer(batch), a.rounds)
    t_cached, cached = timed(lambda: generator(prompt, n_new), a.rounds)
    t_plain, plain = timed(lambda: greedy_without_cache(model, prompt, n_new), max(1, a.rounds - 2))
    forced_hit = bool(scores.hit[batch.targets != -100].all())
    gold = [int(t) for t in sample.answer]
    assert cached == plain, "KV-cached and uncached greedy decoding disagree"
    assert forced_hit == (plain == gold), "teacher-forced scoring disagrees with greedy decoding"
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params, {a.layers} layers x {a.dim}, "
          f"{device.type} {str(dtype).removeprefix('torch.')}; sample: passkey, {a.length:,} tokens, "
          f"answer {n_new} tokens; median of {a.rounds} rounds")
    print(f"  teacher-forced (one pass)        {t_forced:8.3f} s")
    print(f"  greedy with KV cache             {t_cached:8.3f} s")
    print(f"  greedy without cache             {t_plain:8.3f} s")
    print(f"  greedy without cache / teacher-forced: {t_plain / t_forced:.2f}x  (answer tokens: {n_new})")
    print(f"  greedy without cache / KV cache:       {t_plain / t_cached:.2f}x")
    print(f"  KV cache / teacher-forced:             {t_cached / t_forced:.2f}x")
    print(f"  all three agree: answer produced = {forced_hit}")


if __name__ == "__main__":
    main()
