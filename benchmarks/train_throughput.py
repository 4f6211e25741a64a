"""Training throughput of the bundled trainer vs HF transformers, on one GPU.

    python benchmarks/train_throughput.py OUT        # OUT: a `mixcraft build` output directory
    python benchmarks/train_throughput.py            # no OUT: SYNTHETIC log-normal document lengths
    python benchmarks/train_throughput.py --cpu-smoke   # tiny model on CPU: exercises the code path only

A Llama-3.2-1B-shaped model trains on 64K-token rows whose document pieces have the lengths
found in OUT's `indices` (repacked into 64K rows if OUT was built at another length). The rows
go through the real data path (MDS shards -> StreamingDataset -> packing), so data wait is
measured, not assumed. The same model and rows then go through `transformers.LlamaForCausalLM`
(transformers' own `DataCollatorWithFlattening`: each document a feature, flattened into one
row with position_ids; its best available attention) and we print the ratio.
MFU counts causal attention per document (sum of len^2) against the GPU's dense bf16 peak.
Goals: MFU >= 40%, ratio >= 1.3x, data wait < 1% of step time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from mixcraft.core.manifest import Manifest, Stream, TokenizerInfo, write_manifest  # noqa: E402
from mixcraft.mds import shard_files  # noqa: E402
from mixcraft.train.config import (  # noqa: E402
    CheckpointConfig,
    DataConfig,
    LogConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)
from mixcraft.train.data import read_manifest  # noqa: E402
from mixcraft.train.hf import hf_config  # noqa: E402
from mixcraft.train.loop import train  # noqa: E402
from mixcraft.train.metrics import peak_flops  # noqa: E402
from mixcraft.train.model import ModelArgs  # noqa: E402

LLAMA_32_1B = dict(dim=2048, n_layers=16, n_heads=32, n_kv_heads=8, ffn_dim=8192, vocab_size=128256,
                   rope_theta=500000.0, tie_embeddings=True)
SMOKE = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128, vocab_size=512, rope_theta=10000.0,
             tie_embeddings=True)
GOALS = {"mfu": 0.40, "ratio": 1.3, "data_wait": 0.01}


def doc_rows(out: Path | None, seq_len: int, n_rows: int, rng: np.random.Generator) -> tuple[list[np.ndarray], str]:
    """Span lengths for `n_rows` rows of `seq_len` tokens, and where they came from."""
    if out is None:
        # Median e^7.3 ~ 1.5K tokens with a heavy tail: a stand-in, labelled as such.
        lengths = np.clip(rng.lognormal(mean=7.3, sigma=1.4, size=n_rows * seq_len // 64), 16, seq_len)
        return cut_rows(lengths.astype(np.int64), seq_len, n_rows), \
            "SYNTHETIC log-normal document lengths (median 1.5K tokens), not a measured mixture"
    manifest = read_manifest(out, "OUT")
    pieces, built_rows = [], []
    weights = np.array([s.proportion for s in manifest.streams if s.rows], dtype=np.float64)
    streams = [s for s in manifest.streams if s.rows]
    for stream, n in zip(streams, rng.multinomial(n_rows * 2, weights / weights.sum()), strict=True):
        built_rows += read_spans(stream.url, n, rng)
    rng.shuffle(built_rows)
    label = f"document lengths from {out} (seq_len {manifest.seq_len:,}, {len(streams)} streams by proportion)"
    if manifest.seq_len == seq_len:
        return built_rows[:n_rows], label
    for row in built_rows:
        pieces.extend(row)
    return cut_rows(np.array(pieces * (1 + n_rows * seq_len // max(1, sum(pieces)))), seq_len, n_rows), \
        label + f", repacked into {seq_len:,}-token rows"


def read_spans(url: str, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Document-piece lengths of `n` random rows of a subset (read through a scratch cache, so
    the build folder is not written)."""
    from streaming import StreamingDataset

    from mixcraft.train.data import release_dataset, streaming_remote

    with tempfile.TemporaryDirectory(prefix="train_throughput_spans_") as cache:
        dataset = StreamingDataset(remote=streaming_remote(url), local=cache, shuffle=False, batch_size=1)
        picks = rng.choice(dataset.num_samples, size=min(n, dataset.num_samples),
                           replace=n > dataset.num_samples) if n else []
        rows = [np.diff(np.asarray(dataset[int(i)]["indices"], np.int64).reshape(-1, 2), axis=1)[:, 0]
                for i in picks]
        release_dataset(dataset)
    return rows


def cut_rows(lengths: np.ndarray, seq_len: int, n_rows: int) -> list[np.ndarray]:
    """Concatenate document lengths and cut into rows; a document crossing a row end is split."""
    rows, current, used = [], [], 0
    for length in lengths:
        while length and len(rows) < n_rows:
            take = min(int(length), seq_len - used)
            current.append(take)
            used, length = used + take, length - take
            if used == seq_len:
                rows.append(np.array(current))
                current, used = [], 0
    return rows


def write_rows(out: Path, rows: list[np.ndarray], seq_len: int, vocab: int, rng: np.random.Generator) -> None:
    """An MDS subset + manifest in the build layout; token ids are random (throughput only)."""
    from streaming import MDSWriter

    columns = {"input_ids": "ndarray:uint32", "indices": "ndarray:uint32", "domain": "str", "length": "int"}
    with MDSWriter(out=str(out / "bench" / "rows"), columns=columns, compression=None, hashes=["sha1"]) as writer:
        for lengths in rows:
            ends = np.cumsum(lengths)
            spans = np.stack([ends - lengths, ends], axis=1).astype(np.uint32)
            ids = rng.integers(0, vocab, seq_len, dtype=np.uint32)
            writer.write({"input_ids": ids, "indices": spans, "domain": "bench", "length": seq_len})
    stream = Stream(source="bench", bucket="rows", path="bench/rows", proportion=1.0, target_proportion=1.0,
                    target_tokens=None, domain="bench", mask=False, packing="prolong", rows=len(rows),
                    tokens=len(rows) * seq_len, pieces=sum(len(r) for r in rows), docs=0, split=0, tail_tokens=0,
                    padding=0)
    tokenizer = TokenizerInfo(name="random", file=None, file_sha256="", vocab_size=vocab, backend="hf")
    write_manifest(out, Manifest.of_subsets(name="bench", seq_len=seq_len, tokenizer=tokenizer, streams=[stream],
                                            shards={"bench/rows": shard_files(out / "bench" / "rows")}))


def run_mixcraft(work: Path, shape: dict, seq_len: int, steps: int, warmup: int, ac: bool, peak: float | None,
                 attention: str = "auto") -> dict:
    model = ModelConfig(**shape)
    cfg = TrainConfig(
        out_dir=str(work / "run"), data=DataConfig(path=str(work / "data"), shuffle=False), model=model,
        train=OptimConfig(steps=warmup + steps, tokens_per_step=seq_len, lr=1e-5, warmup_steps=0,
                          activation_checkpointing=ac, attention=attention),
        checkpoint=CheckpointConfig(final=False, export_hf=False, resume="never"),
        log=LogConfig(every=1, peak_tflops=peak / 1e12 if peak else "auto"), source="train_throughput")
    train(cfg)
    recs = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()][warmup:]
    seconds = sum(r["step_s"] for r in recs)
    flops_per_s = sum(r["flops"] for r in recs) / seconds
    return {"tok_s": sum(r["tokens"] for r in recs) / seconds, "mfu": flops_per_s / peak if peak else None,
            "flops_per_s": flops_per_s, "mem_gib": max(r["mem_gib"] for r in recs),
            "data_wait": sum(r["data_wait_s"] for r in recs) / seconds}


def hf_implementations(device: torch.device) -> list[str]:
    import importlib.util

    if device.type != "cuda":
        return ["sdpa", "eager"]
    found = ["flash_attention_2"] if importlib.util.find_spec("flash_attn") else []
    # transformers turns packed position_ids into a document mask: block-sparse for flex_attention,
    # a dense (T, T) boolean one for sdpa (4 GiB at 64K), so sdpa is the last resort.
    return found + ["flex_attention", "sdpa"]


def run_hf(args: ModelArgs, rows: list[np.ndarray], seq_len: int, steps: int, warmup: int, ac: bool,
           device: torch.device) -> dict:
    """The same model and rows through transformers; tries its attention implementations best-first."""
    tried = []
    for impl in hf_implementations(device):
        try:
            return {"impl": impl, **_time_hf(impl, args, rows, seq_len, steps, warmup, ac, device)}
        except Exception as err:  # noqa: BLE001 - report why each implementation could not run
            tried.append(f"{impl}: {type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}")
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return {"impl": None, "error": "; ".join(tried)}


def _time_hf(impl, args, rows, seq_len, steps, warmup, ac, device) -> dict:
    from transformers import AutoModelForCausalLM, DataCollatorWithFlattening

    torch.manual_seed(0)
    # fp32 weights + bf16 autocast: the same precision split as our FSDP mixed-precision policy.
    model = AutoModelForCausalLM.from_config(hf_config(args, torch.float32), attn_implementation=impl).to(device)
    if ac:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95), weight_decay=0.1, foreach=True)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    # HF's packing-without-padding path: one feature per document, flattened into one row with
    # position_ids restarting per document and -100 at each document's first label.
    collator = DataCollatorWithFlattening(return_position_ids=True)
    gen = np.random.default_rng(1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for step in range(warmup + steps):
        lengths = rows[step % len(rows)]
        features = [{"input_ids": gen.integers(0, args.vocab_size, n).tolist()} for n in lengths]
        t0 = time.perf_counter()
        batch = {k: v.to(device) for k, v in collator(features).items()}
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    del model, optimizer
    return {"tok_s": seq_len * steps / sum(times[warmup:]), "mem_gib": mem}


def report(shape_name, args, seq_len, label, rows, ours, hf, peak, smoke) -> dict:
    sum_sq = float(np.mean([(r.astype(np.float64) ** 2).sum() for r in rows]))
    if smoke:
        print("CPU SMOKE RUN: tiny model on CPU; these numbers say nothing about GPU throughput")
    print(f"model: {shape_name}, {args.matmul_params() / 1e6:,.1f}M matmul params, {seq_len:,} tokens/row, 1 row/step")
    print(f"documents: {label}; {np.mean([len(r) for r in rows]):.1f} pieces/row, median piece "
          f"{int(np.median(np.concatenate(rows))):,} tokens, attention work {sum_sq / seq_len**2:.3f}x of one "
          f"{seq_len:,}-token document")
    mfu = f"{ours['mfu']:.1%} (causal, per document; peak {peak / 1e12:.0f} TFLOP/s)" if peak else \
        "n/a (peak FLOP/s unknown; pass --peak-tflops)"
    print(f"mixcraft: {ours['tok_s']:,.0f} tok/s | MFU {mfu} | peak mem {ours['mem_gib']:.1f} GiB | "
          f"data wait {ours['data_wait']:.2%} of step time")
    ratio = ours["tok_s"] / hf["tok_s"] if hf.get("impl") else None
    if ratio is not None:
        mem = f"{hf['mem_gib']:.1f} GiB" if hf["mem_gib"] is not None else "n/a on CPU"
        print(f"HF LlamaForCausalLM ({hf['impl']}): {hf['tok_s']:,.0f} tok/s | peak mem {mem}")
        print(f"ratio mixcraft / HF: {ratio:.2f}x")
    else:
        print(f"HF LlamaForCausalLM: could not run ({hf.get('error', 'skipped')}); ratio n/a")
    verdicts = [goal_text("MFU >= 40%", ours["mfu"], GOALS["mfu"], True, "{:.1%}"),
                goal_text("ratio >= 1.3x", ratio, GOALS["ratio"], True, "{:.2f}x"),
                goal_text("data wait < 1%", ours["data_wait"], GOALS["data_wait"], False, "{:.2%}")]
    print("goals: " + " | ".join(verdicts))
    return {"shape": shape_name, "seq_len": seq_len, "documents": label, "mixcraft": ours, "hf": hf,
            "ratio": ratio, "peak_tflops": peak / 1e12 if peak else None, "smoke": smoke}


def goal_text(name: str, value, bound: float, higher: bool, fmt: str) -> str:
    if value is None:
        return f"{name}: n/a"
    ok = value >= bound if higher else value < bound
    return f"{name}: {'PASS' if ok else 'MISS'} ({fmt.format(value)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, help="a mixcraft build output (its indices give doc lengths)")
    parser.add_argument("--seq-len", type=int, default=65536)
    parser.add_argument("--steps", type=int, default=10, help="timed steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-activation-checkpointing", action="store_true")
    parser.add_argument("--no-hf", action="store_true", help="skip the transformers comparison")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak per GPU (default: known GPUs)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny model, 512-token rows, on CPU")
    opts = parser.parse_args(argv)
    if opts.cpu_smoke:
        device, shape, shape_name, seq_len = torch.device("cpu"), SMOKE, "tiny (CPU smoke)", 512
    elif not torch.cuda.is_available():
        print("train_throughput: needs a CUDA GPU and none is visible. Run it on a GPU machine:\n"
              "  python benchmarks/train_throughput.py OUT\n"
              "or pass --cpu-smoke to exercise the code path on CPU (numbers meaningless).", file=sys.stderr)
        return 2
    else:
        device, shape, shape_name, seq_len = torch.device("cuda"), LLAMA_32_1B, "Llama-3.2-1B", opts.seq_len
    ac = not opts.no_activation_checkpointing
    rng = np.random.default_rng(0)
    n_rows = opts.warmup + opts.steps
    rows, label = doc_rows(opts.out, seq_len, n_rows, rng)
    args = ModelArgs(**shape, max_seq_len=seq_len)
    peak = opts.peak_tflops * 1e12 if opts.peak_tflops else peak_flops("auto", device)
    with tempfile.TemporaryDirectory(prefix="train_throughput_") as tmp:
        write_rows(Path(tmp) / "data", rows, seq_len, args.vocab_size, rng)
        ours = run_mixcraft(Path(tmp), shape, seq_len, opts.steps, opts.warmup, ac, peak)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    hf = {"impl": None, "error": "skipped (--no-hf)"} if opts.no_hf else \
        run_hf(args, rows, seq_len, opts.steps, opts.warmup, ac, device)
    result = report(shape_name, args, seq_len, label, rows, ours, hf, peak, opts.cpu_smoke)
    if opts.json:
        opts.json.write_text(json.dumps(result, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
