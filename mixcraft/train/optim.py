"""AdamW and the learning-rate schedule (ProLong's defaults: betas 0.9/0.95, wd 0.1, cosine to 10%)."""

from __future__ import annotations

import math

import torch

from mixcraft.train.config import OptimConfig


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """Decay matrices and embeddings only; norm gains (1-D) are not decayed, as in HF's Trainer."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # foreach batches the update over the (sharded DTensor) params; at 4M tokens per step the
    # optimizer is well under 1% of step time, so the fused kernel is not worth a separate path.
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, foreach=True)


def lr_at(step: int, cfg: OptimConfig) -> float:
    """Linear warmup to `lr`, then cosine decay to `min_lr_ratio * lr` at the last step.

    `step` counts optimizer steps from 0. Warmup reaches full lr at its last step rather than
    spending step 0 at lr 0, and decay starts on the next step.
    """
    warmup = cfg.warmup()
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = min(1.0, (step + 1 - warmup) / max(1, cfg.steps - warmup))
    floor = cfg.min_lr_ratio * cfg.lr
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def apply_hyperparameters(optimizer: torch.optim.Optimizer, cfg: OptimConfig) -> None:
    """Set betas, eps and weight decay from the config, over whatever a loaded checkpoint held:
    a new stage (init_from) or a resumed run with an edited config follows its config. Group 0
    is the decayed one (see build_optimizer); the learning rate is set every step."""
    for i, group in enumerate(optimizer.param_groups):
        group["betas"], group["eps"] = tuple(cfg.betas), cfg.eps
        group["weight_decay"] = cfg.weight_decay if i == 0 else 0.0
