"""The training loop, top to bottom: build -> resume -> loop -> log -> save.

Single process (`mixcraft train CONFIG`) or many (`torchrun --nproc_per_node=N -m mixcraft.train
CONFIG`); the code is the same. Each optimizer step consumes exactly `train.tokens_per_step`
tokens: every rank reads `micro_batch_rows` rows at a time, `accum` times; the rows are then
dealt to micro-batches (plan.py: context-parallel groups pool theirs, and data-parallel ranks
get rows of similar attention cost), and under context parallelism each rank trains on its
contiguous slice of every micro-batch (context.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from mixcraft.errors import UserError
from mixcraft.train.checkpoint import save_checkpoint
from mixcraft.train.config import TrainConfig
from mixcraft.train.context import slice_tokens
from mixcraft.train.data import PackedBatch, batches_forever, close_loader
from mixcraft.train.evaluate import TrainerEval
from mixcraft.train.hf import export_hf
from mixcraft.train.metrics import MetricsLog, peak_flops, train_flops
from mixcraft.train.optim import lr_at, set_lr
from mixcraft.train.parallel import full_state_dict, init_distributed, shutdown
from mixcraft.train.plan import step_batches
from mixcraft.train.setup import Run, build, print_setup


class TrainingDiverged(UserError):
    """Loss or gradient norm is not finite. Raised before the optimizer step, so the weights and
    the last checkpoint are intact."""


def train(cfg: TrainConfig) -> None:
    env = init_distributed(cfg.train.device, cfg.train.context_parallel, cfg.source)
    torch.manual_seed(cfg.seed + env.rank)
    run = batches = metrics = None
    try:
        # -- build and resume
        run = build(cfg, env)
        if env.is_main:
            print_setup(run)
        metrics = MetricsLog(Path(cfg.out_dir), start_step=run.start_step, total_steps=cfg.train.steps,
                             every=cfg.log.every, world=env.world, peak=peak_flops(cfg.log.peak_tflops, env.device),
                             device=env.device, enabled=env.is_main, tensorboard=cfg.log.tensorboard)
        evaluator = TrainerEval(cfg, env, run.model) if cfg.eval is not None else None
        batches = batches_forever(run.loader)
        # -- loop
        for step in range(run.start_step, cfg.train.steps):
            lr = lr_at(step, cfg.train)
            set_lr(run.optimizer, lr)
            t0 = time.perf_counter()
            loaded = [next(batches) for _ in range(run.accum)]
            data_wait_s = time.perf_counter() - t0
            result = train_step(run, loaded, step + 1)
            # -- log
            flops = train_flops(run.model.args, result.n_tokens, result.sum_sq_doc_lens)
            metrics.record(step=step + 1, loss=result.loss, lr=lr, grad_norm=result.grad_norm,
                           n_tokens=result.n_tokens, flops=flops, step_s=time.perf_counter() - t0,
                           data_wait_s=data_wait_s)
            # -- save
            if should_save(cfg, step + 1):
                path = save_checkpoint(run.ckpt_root, step + 1, run.model, run.optimizer, run.loader,
                                       rank=env.rank, device=env.device, keep=cfg.checkpoint.keep,
                                       args=run.model.args)
                if env.is_main:
                    print(f"saved checkpoint {path}", flush=True)
            if evaluator is not None and evaluator.due(step + 1):
                evaluator.run(step + 1, metrics)
        if cfg.checkpoint.export_hf:
            export(run, Path(cfg.out_dir) / "hf")
    finally:
        if batches is not None:
            batches.close()
        close_loader(run.loader if run is not None else None)
        if metrics is not None:
            metrics.close()
        shutdown(env)


@dataclass
class StepResult:
    loss: float  # mean over the step's valid targets, all ranks
    grad_norm: float
    n_tokens: int  # all ranks
    sum_sq_doc_lens: int  # all ranks


def train_step(run: Run, loaded: list[PackedBatch], step: int) -> StepResult:
    """One optimizer step over the micro-batches this rank read (`loaded`)."""
    env, cfg, model = run.env, run.cfg, run.model
    # Count the step's valid targets over what every rank read (each row is read by exactly one
    # rank) first, so each micro-batch's summed loss is divided by the same global number: every
    # token weighs the same however the step is split over ranks, micro-batches and slices.
    counts = torch.tensor([sum(int((b.targets != -100).sum()) for b in loaded), sum(b.n_tokens for b in loaded),
                           sum(b.sum_sq_doc_lens for b in loaded)], dtype=torch.float64, device=env.device)
    dist.all_reduce(counts)
    n_valid = counts[0].item()
    if n_valid == 0:
        raise UserError(f"{cfg.source}: step {step}/{cfg.train.steps}: no token in this batch counts toward the "
                        "loss (all targets masked); check the `mask` column of the SFT data")
    micro = step_batches(loaded, env, balance=cfg.train.balance, seed=cfg.seed, step=step)
    loss_sum = torch.zeros((), dtype=torch.float32, device=env.device)
    for i, batch in enumerate(micro):
        # Without sync, FSDP keeps unsharded fp32 gradients and reduce-scatters once, at the end.
        model.set_requires_gradient_sync(not run.reduce_once or i == len(micro) - 1)
        b = batch.to(env.device)
        ids, targets, pos = (slice_tokens(t, env.cp_rank, env.cp) for t in (b.input_ids, b.targets, b.position_ids))
        loss = model(ids, pos, b.cu_seqlens, b.max_seqlen, targets)
        # FSDP averages gradients over all ranks; x world turns that into (sum of losses) / n_valid.
        (loss * (env.world / n_valid)).backward()
        loss_sum += loss.detach()
    max_norm = cfg.train.grad_clip if cfg.train.grad_clip > 0 else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm, foreach=True)
    grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
    dist.all_reduce(loss_sum)
    loss, norm = loss_sum.item() / n_valid, grad_norm.item()
    if not (math.isfinite(loss) and math.isfinite(norm)):
        run.optimizer.zero_grad(set_to_none=True)
        raise TrainingDiverged(
            f"{cfg.source}: step {step}/{cfg.train.steps}: loss is {loss}, grad norm {norm}; stopped before the "
            "optimizer step, so the last checkpoint is intact. Lower train.lr or lengthen warmup, "
            "or check the data around this step, then re-run to resume from the last checkpoint")
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    return StepResult(loss, norm, int(counts[1].item()), int(counts[2].item()))


def should_save(cfg: TrainConfig, done: int) -> bool:
    periodic = cfg.checkpoint.every and done % cfg.checkpoint.every == 0
    return bool(periodic or (cfg.checkpoint.final and done == cfg.train.steps))


def export(run: Run, out: Path) -> None:
    cfg, env = run.cfg, run.env
    state = full_state_dict(run.model)  # collective: every rank takes part, rank 0 gets the tensors
    if env.is_main:
        dtype = torch.bfloat16 if cfg.checkpoint.export_dtype == "bf16" else torch.float32
        notes = export_hf(state, run.model.args, out, dtype=dtype,
                          carry_from=run.origin.path if run.origin.kind == "hf" else None,
                          tokenizer_json=run.manifest.tokenizer_file)
        for note in notes:
            print(f"{cfg.source}: warning: {note}", flush=True)
        print(f"exported HF checkpoint to {out} (transformers.LlamaForCausalLM.from_pretrained)", flush=True)
    dist.barrier()
