"""Everything a run needs before its first step, resolved against the data and the world:
checked data, model shape and weights, optimizer, loader, resume point, memory plan."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from mixcraft.errors import UserError
from mixcraft.train.attention import available_backends, select_backend
from mixcraft.train.checkpoint import latest_checkpoint, load_checkpoint, load_model_and_optimizer
from mixcraft.train.config import TrainConfig
from mixcraft.train.context import check_heads, kv_repeats
from mixcraft.train.data import Manifest, StreamSpec, choose_streams, make_loader, read_manifest
from mixcraft.train.integrity import Verdict, verify_data
from mixcraft.train.memory import GIB, MemoryEstimate, device_capacity, estimate_memory
from mixcraft.train.model import Llama, ModelArgs
from mixcraft.train.optim import apply_hyperparameters, build_optimizer
from mixcraft.train.origin import Origin, find_origin, resolve_model_args
from mixcraft.train.parallel import DistEnv, build_model, compute_dtype


@dataclass
class Run:
    """Everything `build` makes."""

    cfg: TrainConfig
    env: DistEnv
    manifest: Manifest
    streams: list[StreamSpec]
    verdict: Verdict
    origin: Origin
    model: Llama
    optimizer: torch.optim.Optimizer
    loader: object  # streaming.StreamingDataLoader yielding PackedBatch
    accum: int  # micro-batches each rank reads per optimizer step
    row_tokens: int
    dtype: torch.dtype
    backend_reason: str
    memory: MemoryEstimate
    reduce_once: bool  # reduce-scatter gradients only after the step's last micro-batch
    reduce_reason: str
    ckpt_root: Path
    resume_from: Path | None
    start_step: int


def build(cfg: TrainConfig, env: DistEnv) -> Run:
    """Check the data, then make the model (sharded; weights loaded), optimizer and loader, and
    restore a checkpoint (resume) or continue another run's (init_from)."""
    where = cfg.source
    ckpt_root = Path(cfg.out_dir) / "checkpoints"
    if env.is_main:
        ckpt_root.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(cfg.data.path, f"{where}: data.path")
    streams = choose_streams(manifest, cfg.data.proportions, f"{where}: data.proportions")
    verdict = verify_data(streams, hashes=cfg.data.verify == "sha1", where=f"{where}: data.path",
                          local_rank=env.local_rank)
    if verdict.fault:
        raise UserError(verdict.fault)
    row_tokens = min(manifest.seq_len, cfg.data.crop_tokens or manifest.seq_len)
    accum = grad_accum_steps(cfg, row_tokens, env)
    origin = find_origin(cfg.model.init_from, where)
    args = resolve_model_args(cfg.model, origin, manifest_vocab=manifest.vocab_size, seq_len=manifest.seq_len,
                              where=where)
    check_context_parallel(cfg, args, row_tokens)
    dtype = compute_dtype(cfg.train.precision, env.device)
    backend, backend_reason = select_backend(cfg.train.attention, env.device, where)
    resume_from = find_resume(cfg, ckpt_root)
    memory, reduce_once, reduce_reason = plan_memory(cfg, env, args, row_tokens * cfg.train.micro_batch_rows,
                                                     backend, dtype, accum * env.cp)
    fresh = resume_from is None and origin.kind != "checkpoint"
    model = build_model(args, env, dtype=dtype, seed=cfg.seed, hf_init=str(origin.path) if origin.kind == "hf" else None,
                        load_weights=fresh, where=where)
    model.configure(attention=backend, activation_checkpointing=cfg.train.activation_checkpointing,
                    loss_chunk_tokens=cfg.train.loss_chunk_tokens, cp_group=env.cp_group)
    optimizer = build_optimizer(model, cfg.train)
    loader = make_loader(streams, cache=cfg.cache_dir / manifest.digest[:16],
                         micro_batch_rows=cfg.train.micro_batch_rows, seed=cfg.seed, shuffle=cfg.data.shuffle,
                         num_workers=cfg.data.num_workers, crop_tokens=cfg.data.crop_tokens,
                         vocab_size=args.vocab_size, pin_memory=env.device.type == "cuda")
    start = 0
    if resume_from is not None:
        start = load_checkpoint(resume_from, model, optimizer, loader, rank=env.rank, device=env.device)
    elif origin.kind == "checkpoint":
        load_model_and_optimizer(origin.path, model, optimizer, f"{where}: model.init_from")
    apply_hyperparameters(optimizer, cfg.train)  # the config's, not those saved in a checkpoint
    return Run(cfg, env, manifest, streams, verdict, origin, model, optimizer, loader, accum, row_tokens, dtype,
               backend_reason, memory, reduce_once, reduce_reason, ckpt_root, resume_from, start)


def grad_accum_steps(cfg: TrainConfig, row_tokens: int, env: DistEnv) -> int:
    """Micro-batches each rank reads per step. Every rank reads rows (context-parallel ranks
    too: their group pools them), so the step's rows must split evenly over the world."""
    per_micro = row_tokens * cfg.train.micro_batch_rows * env.world
    tokens = cfg.train.tokens_per_step
    if tokens % per_micro:
        near = sorted({max(1, tokens // per_micro) * per_micro, (tokens // per_micro + 1) * per_micro})
        raise cfg.fail("train.tokens_per_step", f"{tokens:,} is not a multiple of row tokens {row_tokens:,} x "
                       f"micro_batch_rows {cfg.train.micro_batch_rows} x world size {env.world} = {per_micro:,}; "
                       f"use {' or '.join(f'{n:,}' for n in near)}")
    return tokens // per_micro


def check_context_parallel(cfg: TrainConfig, args: ModelArgs, row_tokens: int) -> None:
    cp = cfg.train.context_parallel
    if cp == 1:
        return
    micro_tokens = row_tokens * cfg.train.micro_batch_rows
    if micro_tokens % cp:
        raise cfg.fail("train.context_parallel", f"{cp} does not divide the {micro_tokens:,} tokens of a micro-batch "
                       "(row tokens x micro_batch_rows) into equal slices")
    if (why := check_heads(args.n_heads, args.n_kv_heads, cp)) is not None:
        raise cfg.fail("train.context_parallel", why)


def plan_memory(cfg: TrainConfig, env: DistEnv, args: ModelArgs, micro_tokens: int, backend: str,
                dtype: torch.dtype, n_micro: int) -> tuple[MemoryEstimate, bool, str]:
    """The per-rank memory estimate, and whether gradients are reduced once per step."""
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    capacity = device_capacity(env.device, local_world)

    def estimate(unsharded: bool) -> MemoryEstimate:
        return estimate_memory(
            args, world=env.world, cp=env.cp, tokens_per_micro=micro_tokens, compute_bytes=dtype.itemsize,
            activation_checkpointing=cfg.train.activation_checkpointing, loss_chunk_tokens=cfg.train.loss_chunk_tokens,
            sdpa=backend == "sdpa", unsharded_grads=unsharded, capacity=capacity, cuda=env.device.type == "cuda",
            kv_repeat=kv_repeats(args.n_kv_heads, env.cp))

    once, every = estimate(n_micro > 1), estimate(False)
    if n_micro == 1:
        return once, True, "once per step (one micro-batch per step)"
    if cfg.train.grad_reduce == "once_per_step":
        return once, True, f"once per step, after {n_micro} micro-batches (as configured)"
    if cfg.train.grad_reduce == "every_micro_batch":
        return every, False, "after every micro-batch (as configured)"
    if once.fits:
        return once, True, f"once per step, after {n_micro} micro-batches (auto: unsharded gradients fit)"
    return every, False, (f"after every micro-batch (auto: keeping {once.parts['unsharded grads'] / GIB:.1f} GiB of "
                          "unsharded fp32 gradients would not fit)")


def memory_warning(run: Run) -> str | None:
    """One line telling the user the run will likely run out of memory, and what to change."""
    mem, cfg = run.memory, run.cfg
    if mem.fits:
        return None
    fixes = []
    if not cfg.train.activation_checkpointing:
        fixes.append("set train.activation_checkpointing: true")
    fixes.append(f"raise train.context_parallel (now {cfg.train.context_parallel}; activations split that many ways)")
    if cfg.train.micro_batch_rows > 1:
        fixes.append("lower train.micro_batch_rows")
    if run.reduce_once and mem.parts["unsharded grads"]:
        fixes.append("set train.grad_reduce: every_micro_batch")
    return (f"{cfg.source}: warning: estimated {mem.total / GIB:.1f} GiB per rank exceeds 95% of the "
            f"{mem.capacity / GIB:.1f} GiB available; expect an out-of-memory error. To fit: {'; '.join(fixes)}")


def find_resume(cfg: TrainConfig, ckpt_root: Path) -> Path | None:
    if cfg.checkpoint.resume == "never":
        return None
    if cfg.checkpoint.resume == "auto":
        return latest_checkpoint(ckpt_root)
    return Path(cfg.checkpoint.resume)


def print_setup(run: Run) -> None:
    cfg, a, model, env = run.cfg, run.model.args, run.model, run.env
    total = sum(s.proportion for s in run.streams)
    mix = ", ".join(f"{s.name} {s.proportion / total:.0%}" for s in run.streams)
    n_params = sum(p.numel() for p in model.parameters())
    origin = {"scratch": f"from scratch (seed {cfg.seed})", "hf": f"from {run.origin.path} (HF)",
              "checkpoint": f"from {run.origin.path} (model and AdamW state)"}[run.origin.kind]
    v = run.verdict
    check = f"sha1 and sizes of {v.n_shards} shards, {v.n_bytes / 1e9:.2f} GB, in {v.seconds:.1f} s" \
        if cfg.data.verify == "sha1" else f"sizes of {v.n_shards} shards"
    print(f"data: {cfg.data.path} (seq_len {run.manifest.seq_len:,}, tokenizer {run.manifest.tokenizer}): {mix}")
    print(f"data checked against the manifest: rows per stream, {check}")
    print(f"model: {n_params / 1e6:.1f}M params (dim {a.dim}, {a.n_layers} layers, {a.n_heads} heads / "
          f"{a.n_kv_heads} kv, vocab {a.vocab_size:,}, rope theta {a.rope_theta:g}) {origin}")
    print(f"run: world {env.world} x {env.device.type} (data parallel {env.dp} x context parallel {env.cp}) | "
          f"{str(run.dtype).removeprefix('torch.')} | attention {model.attention_backend} "
          f"(available: {', '.join(available_backends(env.device))}) | {run.row_tokens:,} tokens/row x "
          f"{cfg.train.micro_batch_rows} rows x {run.accum} accum x {env.world} ranks = "
          f"{cfg.train.tokens_per_step:,} tokens/step")
    print(f"attention {model.attention_backend}: {run.backend_reason}")
    print(f"gradients reduced {run.reduce_reason}")
    print(run.memory.line())
    if (warning := memory_warning(run)) is not None:
        print(warning, file=sys.stderr)
    if run.resume_from is not None:
        print(f"resuming from {run.resume_from} at step {run.start_step}")
    print(f"out: {cfg.out_dir} (metrics.jsonl, checkpoints/, hf/)", flush=True)
