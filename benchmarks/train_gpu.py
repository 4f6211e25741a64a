"""The trainer's GPU checks in one command (`make bench-gpu`), for a session that has a GPU:

    python benchmarks/train_gpu.py [OUT] [--json FILE]   # on a CUDA machine (OUT: a build, for doc lengths)
    python benchmarks/train_gpu.py --cpu-smoke           # the same code paths on CPU, tiny sizes

1. attention: each FlashAttention backend found (flash_attn, varlen) against SDPA with the
   explicit document mask on the same bf16 inputs: max error within bf16 tolerance, and the
   forward+backward time of each (ratio against SDPA).
2. context parallelism: `torchrun --nproc_per_node=2` with context_parallel 2 against one
   process on the same rows: the same losses (bf16 tolerance on GPU). Needs 2 GPUs; with fewer
   it is skipped and says so.
3. throughput: benchmarks/train_throughput.py at 64K for a Llama-3.2-1B-shaped model: tok/s,
   causal-correct MFU, data wait, and the ratio against HF transformers with its flattening
   collator.
Exit status 1 if a check fails. --cpu-smoke runs 1-3 on CPU (gloo, SDPA, tiny model); its
numbers say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
sys.path.insert(0, str(ROOT / "tests" / "train"))  # the trainer tests' fixture writer

from mixcraft.train.attention import available_backends, doc_attention  # noqa: E402

BF16_TOL = 2e-2  # bf16 has 8 mantissa bits: ~4e-3 relative per rounding, a few roundings deep


def check_attention(device: torch.device, n_tokens: int, repeats: int) -> dict:
    """Fast backends against masked SDPA on the same inputs: error and time (fwd + bwd)."""
    torch.manual_seed(0)
    lengths = [n_tokens // 8, n_tokens // 2, 7, n_tokens - n_tokens // 8 - n_tokens // 2 - 7]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device=device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    q, k, v = (torch.randn(n_tokens, h, 64, device=device, dtype=dtype) for h in (8, 2, 2))
    ref = doc_attention("sdpa", q.float(), k.float(), v.float(), cu, max(lengths), None)
    result = {"tokens": n_tokens, "doc_lengths": lengths, "backends": {}}
    for backend in available_backends(device):
        out = doc_attention(backend, q, k, v, cu, max(lengths), None).float()
        err = (out - ref).abs().max().item()
        seconds = _time_fwd_bwd(backend, q, k, v, cu, max(lengths), repeats)
        result["backends"][backend] = {"max_abs_err": err, "ok": err <= BF16_TOL, "fwd_bwd_s": seconds}
    base = result["backends"]["sdpa"]["fwd_bwd_s"]
    for name, r in result["backends"].items():
        r["speedup_vs_sdpa"] = base / r["fwd_bwd_s"]
        print(f"attention {name}: max |err| vs masked SDPA {r['max_abs_err']:.2e} "
              f"({'ok' if r['ok'] else 'FAIL'}, bf16 tolerance {BF16_TOL}) | fwd+bwd {r['fwd_bwd_s'] * 1e3:.1f} ms "
              f"= {r['speedup_vs_sdpa']:.2f}x SDPA")
    if len(result["backends"]) == 1:
        print(f"attention: no FlashAttention backend on {device.type}; only SDPA checked")
    result["ok"] = all(r["ok"] for r in result["backends"].values())
    return result


def _time_fwd_bwd(backend, q, k, v, cu, max_len, repeats) -> float:
    q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    times = []
    for _ in range(repeats + 1):
        _sync(q.device)
        t0 = time.perf_counter()
        doc_attention(backend, q, k, v, cu, max_len, None).float().sum().backward()
        _sync(q.device)
        times.append(time.perf_counter() - t0)
    return min(times[1:])  # the first call compiles/warms up


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_context_parallel(device: torch.device, work: Path) -> dict:
    """torchrun, 2 processes, context_parallel 2 vs 1 process: same losses."""
    from train_fixtures import read_metrics, tiny_config, torchrun, write_mixture

    from mixcraft.train import run_train

    if device.type == "cuda" and torch.cuda.device_count() < 2:
        msg = f"context parallelism: skipped, needs 2 GPUs and this machine has {torch.cuda.device_count()}"
        print(msg)
        return {"skipped": msg, "ok": True}
    data = write_mixture(work / "cp_data", rows=8)
    dev = "cuda" if device.type == "cuda" else "cpu"
    one = tiny_config(work, data, name="one", train={"steps": 4, "device": dev})
    two = tiny_config(work, data, name="two", train={"steps": 4, "device": dev, "context_parallel": 2})
    torchrun(two, 2)
    run_train(one)
    a, b = read_metrics(work / "one"), read_metrics(work / "two")
    tol = BF16_TOL if dev == "cuda" else 1e-5
    diffs = [abs(x["loss"] - y["loss"]) for x, y in zip(a, b, strict=True)]
    ok = len(diffs) == 4 and max(diffs) <= tol
    print(f"context parallelism: 2 ranks x {dev} vs 1, losses {[round(r['loss'], 4) for r in b]}, "
          f"max |diff| {max(diffs):.2e} ({'ok' if ok else 'FAIL'}, tolerance {tol})")
    return {"max_loss_diff": max(diffs), "ok": ok}


def run_throughput(out: Path | None, smoke: bool, work: Path) -> dict:
    spec = importlib.util.spec_from_file_location("train_throughput", ROOT / "benchmarks" / "train_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result_file = work / "throughput.json"
    argv = ([str(out)] if out else []) + ["--json", str(result_file)]
    argv += ["--cpu-smoke", "--steps", "2", "--warmup", "1"] if smoke else ["--seq-len", "65536"]
    code = module.main(argv)
    return {**json.loads(result_file.read_text()), "ok": code == 0} if code == 0 else {"ok": False}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, help="a mixcraft build output (document lengths)")
    parser.add_argument("--json", type=Path, help="write all results here")
    parser.add_argument("--cpu-smoke", action="store_true", help="run every check on CPU at tiny sizes")
    opts = parser.parse_args(argv)
    if not opts.cpu_smoke and not torch.cuda.is_available():
        print("train_gpu: needs a CUDA GPU and none is visible; pass --cpu-smoke to exercise the code paths on CPU",
              file=sys.stderr)
        return 2
    device = torch.device("cpu") if opts.cpu_smoke else torch.device("cuda")
    if opts.cpu_smoke:
        print("CPU SMOKE RUN: tiny sizes on CPU; these numbers say nothing about a GPU")
    with tempfile.TemporaryDirectory(prefix="train_gpu_") as tmp:
        work = Path(tmp)
        results = {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "attention": check_attention(device, 1024 if opts.cpu_smoke else 32768, 2 if opts.cpu_smoke else 5),
            "context_parallel": check_context_parallel(device, work / "cp"),
            "throughput": run_throughput(opts.out, opts.cpu_smoke, work),
        }
    failed = [name for name, r in results.items() if isinstance(r, dict) and not r["ok"]]
    print("train_gpu: " + ("all checks passed" if not failed else f"FAILED: {', '.join(failed)}"))
    if opts.json:
        opts.json.write_text(json.dumps(results, indent=2, default=float))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
