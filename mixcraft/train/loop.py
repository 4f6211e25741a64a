"""The training loop, top to bottom: build -> resume -> loop -> log -> save.

Single process (`mixcraft train CONFIG`) or many (`torchrun --nproc_per_node=N -m mixcraft.train
CONFIG`); the code is the same. Each optimizer step consumes exactly `train.tokens_per_step`
tokens: rows of the mixture, `micro_batch_rows` at a time per rank, accumulated over
`tokens_per_step / (row_tokens * micro_batch_rows * world)` micro-steps.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from mixcraft.errors import UserError
from mixcraft.train.attention import available_backends, select_backend
from mixcraft.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from mixcraft.train.config import TrainConfig
from mixcraft.train.data import (
    Manifest,
    PackedBatch,
    StreamSpec,
    batches_forever,
    choose_streams,
    close_loader,
    make_loader,
    read_manifest,
)
from mixcraft.train.evaluate import TrainerEval
from mixcraft.train.hf import export_hf, resolve_model_args
from mixcraft.train.metrics import MetricsLog, peak_flops, train_flops
from mixcraft.train.model import Llama
from mixcraft.train.optim import build_optimizer, lr_at, set_lr
from mixcraft.train.parallel import (
    DistEnv,
    build_model,
    compute_dtype,
    full_state_dict,
    init_distributed,
    shutdown,
)


class TrainingDiverged(UserError):
    """Loss or gradient norm is not finite. Raised before the optimizer step, so the weights and
    the last checkpoint are intact."""


def train(cfg: TrainConfig) -> None:
    env = init_distributed(cfg.train.device, cfg.source)
    torch.manual_seed(cfg.seed + env.rank)
    run = batches = metrics = None
    try:
        # -- build
        run = build(cfg, env)
        # -- resume
        start = 0
        if run.resume_from is not None:
            start = load_checkpoint(run.resume_from, run.model, run.optimizer, run.loader, rank=env.rank,
                                    device=env.device)
        if env.is_main:
            print_setup(run, start)
        metrics = MetricsLog(Path(cfg.out_dir), start_step=start, total_steps=cfg.train.steps, every=cfg.log.every,
                             world=env.world, peak=peak_flops(cfg.log.peak_tflops, env.device), device=env.device,
                             enabled=env.is_main, tensorboard=cfg.log.tensorboard)
        evaluator = TrainerEval(cfg, env, run.model) if cfg.eval is not None else None
        batches = batches_forever(run.loader)
        # -- loop
        for step in range(start, cfg.train.steps):
            lr = lr_at(step, cfg.train)
            set_lr(run.optimizer, lr)
            t0 = time.perf_counter()
            micro = [next(batches) for _ in range(run.accum)]
            data_wait_s = time.perf_counter() - t0
            result = train_step(run.model, run.optimizer, micro, env, cfg, step + 1)
            # -- log
            flops = train_flops(run.model.args, result.n_tokens, result.sum_sq_doc_lens)
            metrics.record(step=step + 1, loss=result.loss, lr=lr, grad_norm=result.grad_norm,
                           n_tokens=result.n_tokens, flops=flops, step_s=time.perf_counter() - t0,
                           data_wait_s=data_wait_s)
            # -- save
            if should_save(cfg, step + 1):
                path = save_checkpoint(run.ckpt_root, step + 1, run.model, run.optimizer, run.loader,
                                       rank=env.rank, device=env.device, keep=cfg.checkpoint.keep)
                if env.is_main:
                    print(f"saved checkpoint {path}", flush=True)
            if evaluator is not None and evaluator.due(step + 1):
                evaluator.run(step + 1, metrics)
        if cfg.checkpoint.export_hf:
            export(cfg, run.model, env, Path(cfg.out_dir) / "hf")
    finally:
        if batches is not None:
            batches.close()
        close_loader(run.loader if run is not None else None)
        if metrics is not None:
            metrics.close()
        shutdown(env)


@dataclass
class Run:
    """Everything `build` makes: the config's objects, resolved against the data and the world."""

    cfg: TrainConfig
    env: DistEnv
    manifest: Manifest
    streams: list[StreamSpec]
    model: Llama
    optimizer: torch.optim.Optimizer
    loader: object  # streaming.StreamingDataLoader yielding PackedBatch
    accum: int  # micro-batches per optimizer step on each rank
    row_tokens: int
    dtype: torch.dtype
    ckpt_root: Path
    resume_from: Path | None


def build(cfg: TrainConfig, env: DistEnv) -> Run:
    """Data, model (sharded, weights loaded unless a checkpoint will be), optimizer, loader."""
    ckpt_root = Path(cfg.out_dir) / "checkpoints"
    if env.is_main:
        ckpt_root.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(Path(cfg.data.path), f"{cfg.source}: data.path")
    streams = choose_streams(manifest, cfg.data.proportions, f"{cfg.source}: data.proportions")
    row_tokens = min(manifest.seq_len, cfg.data.crop_tokens or manifest.seq_len)
    accum = grad_accum_steps(cfg, row_tokens, env.world)
    args = resolve_model_args(cfg.model, manifest_vocab=manifest.vocab_size, seq_len=manifest.seq_len,
                              where=cfg.source)
    dtype = compute_dtype(cfg.train.precision, env.device)
    backend = select_backend(cfg.train.attention, env.device, cfg.source)
    resume_from = find_resume(cfg, ckpt_root)
    model = build_model(args, env, dtype=dtype, seed=cfg.seed, init_from=cfg.model.init_from,
                        load_weights=resume_from is None, where=cfg.source)
    model.configure(attention=backend, activation_checkpointing=cfg.train.activation_checkpointing,
                    loss_chunk_tokens=cfg.train.loss_chunk_tokens)
    optimizer = build_optimizer(model, cfg.train)
    loader = make_loader(streams, micro_batch_rows=cfg.train.micro_batch_rows, seed=cfg.seed,
                         shuffle=cfg.data.shuffle, num_workers=cfg.data.num_workers,
                         crop_tokens=cfg.data.crop_tokens, vocab_size=args.vocab_size,
                         pin_memory=env.device.type == "cuda")
    return Run(cfg, env, manifest, streams, model, optimizer, loader, accum, row_tokens, dtype, ckpt_root,
               resume_from)


@dataclass
class StepResult:
    loss: float  # mean over the step's valid targets, all ranks
    grad_norm: float
    n_tokens: int  # all ranks
    sum_sq_doc_lens: int  # all ranks


def train_step(model: Llama, optimizer, micro: list[PackedBatch], env: DistEnv, cfg: TrainConfig,
               step: int) -> StepResult:
    """One optimizer step over `micro` (this rank's accumulation micro-batches)."""
    # Count the valid targets of the whole step on every rank first, so each micro-batch's summed
    # loss is divided by the same global number: every token weighs the same however the step is split.
    counts = torch.tensor([sum(int((b.targets != -100).sum()) for b in micro), sum(b.n_tokens for b in micro),
                           sum(b.sum_sq_doc_lens for b in micro)], dtype=torch.float64, device=env.device)
    dist.all_reduce(counts)
    n_valid = counts[0].item()
    if n_valid == 0:
        raise UserError(f"{cfg.source}: step {step}/{cfg.train.steps}: no token in this batch counts toward the "
                        "loss (all targets masked); check the `mask` column of the SFT data")
    loss_sum = torch.zeros((), dtype=torch.float32, device=env.device)
    for batch in micro:
        b = batch.to(env.device)
        loss = model(b.input_ids, b.position_ids, b.cu_seqlens, b.max_seqlen, b.targets)
        # FSDP averages gradients over ranks; x world turns that into (sum of losses) / n_valid.
        (loss * (env.world / n_valid)).backward()
        loss_sum += loss.detach()
    max_norm = cfg.train.grad_clip if cfg.train.grad_clip > 0 else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm, foreach=True)
    grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
    dist.all_reduce(loss_sum)
    loss, norm = loss_sum.item() / n_valid, grad_norm.item()
    if not (math.isfinite(loss) and math.isfinite(norm)):
        optimizer.zero_grad(set_to_none=True)
        raise TrainingDiverged(
            f"{cfg.source}: step {step}/{cfg.train.steps}: loss is {loss}, grad norm {norm}; stopped before the "
            "optimizer step, so the last checkpoint is intact. Lower train.lr or lengthen warmup, "
            "or check the data around this step, then re-run to resume from the last checkpoint")
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(loss, norm, int(counts[1].item()), int(counts[2].item()))


def grad_accum_steps(cfg: TrainConfig, row_tokens: int, world: int) -> int:
    per_micro = row_tokens * cfg.train.micro_batch_rows * world
    tokens = cfg.train.tokens_per_step
    if tokens % per_micro:
        near = sorted({max(1, tokens // per_micro) * per_micro, (tokens // per_micro + 1) * per_micro})
        raise cfg.fail("train.tokens_per_step", f"{tokens:,} is not a multiple of row tokens {row_tokens:,} x "
                       f"micro_batch_rows {cfg.train.micro_batch_rows} x world size {world} = {per_micro:,}; "
                       f"use {' or '.join(f'{n:,}' for n in near)}")
    return tokens // per_micro


def should_save(cfg: TrainConfig, done: int) -> bool:
    periodic = cfg.checkpoint.every and done % cfg.checkpoint.every == 0
    return bool(periodic or (cfg.checkpoint.final and done == cfg.train.steps))


def find_resume(cfg: TrainConfig, ckpt_root: Path) -> Path | None:
    if cfg.checkpoint.resume == "never":
        return None
    if cfg.checkpoint.resume == "auto":
        return latest_checkpoint(ckpt_root)
    return Path(cfg.checkpoint.resume)


def export(cfg: TrainConfig, model: Llama, env: DistEnv, out: Path) -> None:
    state = full_state_dict(model)  # collective: every rank takes part, rank 0 gets the tensors
    if env.is_main:
        dtype = torch.bfloat16 if cfg.checkpoint.export_dtype == "bf16" else torch.float32
        export_hf(state, model.args, out, dtype=dtype, tokenizer_from=cfg.model.init_from)
        print(f"exported HF checkpoint to {out} (transformers.LlamaForCausalLM.from_pretrained)", flush=True)
    dist.barrier()


def print_setup(run: Run, start: int) -> None:
    cfg, a, model = run.cfg, run.model.args, run.model
    total = sum(s.proportion for s in run.streams)
    mix = ", ".join(f"{s.name} {s.proportion / total:.0%}" for s in run.streams)
    n_params = sum(p.numel() for p in model.parameters())
    origin = f"from {cfg.model.init_from}" if cfg.model.init_from else f"from scratch (seed {cfg.seed})"
    print(f"data: {cfg.data.path} (seq_len {run.manifest.seq_len:,}, tokenizer {run.manifest.tokenizer}): {mix}")
    print(f"model: {n_params / 1e6:.1f}M params (dim {a.dim}, {a.n_layers} layers, {a.n_heads} heads / "
          f"{a.n_kv_heads} kv, vocab {a.vocab_size:,}, rope theta {a.rope_theta:g}) {origin}")
    print(f"run: world {run.env.world} x {run.env.device.type} | {str(run.dtype).removeprefix('torch.')} | "
          f"attention {model.attention_backend} (available: {', '.join(available_backends(run.env.device))}) | "
          f"{run.row_tokens:,} tokens/row x {cfg.train.micro_batch_rows} rows x {run.accum} accum x "
          f"{run.env.world} ranks = {cfg.train.tokens_per_step:,} tokens/step")
    if run.resume_from is not None:
        print(f"resuming from {run.resume_from} at step {start}")
    print(f"out: {cfg.out_dir} (metrics.jsonl, checkpoints/, hf/)", flush=True)
