"""Trainer config: a YAML file loaded by `mixcraft.schema` into frozen dataclasses.

Every mistake is one `UserError` line naming the file, the YAML path, what was wrong and how
to fix it. Paths (`out_dir`, `data.path`, `data.cache_dir`, `model.init_from`,
`checkpoint.resume`) are relative to the config file's folder, like a recipe's; `data.path`
may also be an fsspec URL (`s3://`, `gs://`, `file://`). `--set train.steps=5` overrides go
through the same checks.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from mixcraft import schema
from mixcraft.errors import UserError
from mixcraft.eval.config import EvalConfig
from mixcraft.schema import Invalid, NonNegative, Positive, Range, RelPath

PositiveInt = Annotated[int, Positive]
Fraction = Annotated[float, Range(ge=0, le=1)]
Beta = Annotated[float, Range(ge=0, lt=1)]


@dataclass(frozen=True)
class DataConfig:
    path: RelPath  # a `mixcraft build` output (has manifest.json): a folder or an fsspec URL
    # {"source/bucket": weight}; replaces the manifest's target proportions; unlisted streams are left out.
    proportions: dict[str, Annotated[float, NonNegative]] | None = None
    shuffle: bool = True
    num_workers: Annotated[int, NonNegative] = 0
    # Train on the first N tokens of each row (spans clipped). For a short-context curriculum
    # phase (Llama 2 Long's 4K->32K) and for CPU smoke runs; null keeps the full row.
    crop_tokens: PositiveInt | None = None
    # Where StreamingDataset keeps its working copies (decompressed shards), so the build folder
    # is only ever read. Default: OUT_DIR/data_cache. Across nodes, point it at node-local disk.
    cache_dir: RelPath | None = None
    # sha1: check every shard's bytes and sha1 against the manifest before step 1 (once per node);
    # size: sizes and row counts only (for remote data too large to read twice).
    verify: Literal["sha1", "size"] = "sha1"


@dataclass(frozen=True)
class ModelConfig:
    # A local HF Llama checkpoint (config.json + *.safetensors), or a mixcraft checkpoint
    # (a checkpoints/step_* folder, or a run's out_dir: its latest), which continues the
    # model AND its AdamW state with new data, RoPE theta and schedule (ProLong's stage chaining).
    init_from: RelPath | None = None
    dim: PositiveInt | None = None
    n_layers: PositiveInt | None = None
    n_heads: PositiveInt | None = None
    n_kv_heads: PositiveInt | None = None
    ffn_dim: PositiveInt | None = None
    vocab_size: PositiveInt | Literal["auto"] = "auto"  # auto: the manifest's tokenizer vocab_size
    rope_theta: Annotated[float, Positive] | None = None  # null: the checkpoint's (10000 from scratch); ABF
    rope_scaling: dict[str, Any] | None = None
    norm_eps: Annotated[float, Positive] = 1e-5
    tie_embeddings: bool = False
    init_std: Annotated[float, Positive] = 0.02
    max_seq_len: PositiveInt | None = None  # written to the exported config.json; default: data seq_len

    def __post_init__(self) -> None:
        shape = {"dim": self.dim, "n_layers": self.n_layers, "n_heads": self.n_heads,
                 "n_kv_heads": self.n_kv_heads, "ffn_dim": self.ffn_dim}
        missing = [k for k, v in shape.items() if v is None]
        if self.init_from is None and missing:
            raise Invalid(f"required when model.init_from is not set (a model from scratch needs "
                          f"{', '.join(shape)})", missing[0])
        if self.n_heads and self.dim and self.dim % self.n_heads:
            raise Invalid(f"dim {self.dim} is not divisible by n_heads {self.n_heads}", "n_heads")
        if self.n_heads and self.n_kv_heads and self.n_heads % self.n_kv_heads:
            raise Invalid(f"n_heads {self.n_heads} is not divisible by n_kv_heads {self.n_kv_heads}", "n_kv_heads")


@dataclass(frozen=True)
class OptimConfig:
    steps: PositiveInt
    tokens_per_step: PositiveInt
    lr: Annotated[float, Positive]
    micro_batch_rows: PositiveInt = 1
    warmup_ratio: Annotated[float, Range(ge=0, lt=1)] | None = None
    warmup_steps: Annotated[int, NonNegative] | None = None
    min_lr_ratio: Fraction = 0.1
    weight_decay: Annotated[float, NonNegative] = 0.1
    betas: tuple[Beta, ...] = (0.9, 0.95)
    eps: Annotated[float, Positive] = 1e-8
    grad_clip: Annotated[float, NonNegative] = 1.0  # 0: no clipping
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    device: Literal["auto", "cuda", "cpu"] = "auto"
    attention: Literal["auto", "flash_attn", "varlen", "sdpa"] = "auto"
    activation_checkpointing: bool = False
    loss_chunk_tokens: PositiveInt = 2048  # ProLong's block size: full 64K x 128K logits would be 32 GiB in fp32
    # Ranks that split each row into contiguous slices (DeepSpeed-Ulysses all-to-all over heads);
    # the world is data parallel x context_parallel. ProLong's 512K stage uses 8.
    context_parallel: PositiveInt = 1
    # Reduce-scatter gradients once per step (unsharded fp32 gradients are kept between
    # micro-batches) or after every micro-batch (less memory); auto: once per step if the
    # memory estimate says it fits.
    grad_reduce: Literal["auto", "once_per_step", "every_micro_batch"] = "auto"
    # Spread rows over data-parallel ranks and micro-batches by attention cost (sum of squared
    # document lengths), seeded, so no rank waits on one with the long documents.
    balance: bool = True

    def __post_init__(self) -> None:
        if self.warmup_ratio is not None and self.warmup_steps is not None:
            raise Invalid("give either warmup_ratio or warmup_steps, not both", "warmup_steps")
        if self.warmup_steps is not None and self.warmup_steps > self.steps:
            raise Invalid(f"must be at most steps={self.steps}, got {self.warmup_steps}", "warmup_steps")
        if len(self.betas) != 2:
            raise Invalid(f"expected two numbers in [0, 1), got {list(self.betas)} (AdamW default: [0.9, 0.95])",
                          "betas")

    def warmup(self) -> int:
        """Warmup length in optimizer steps."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return round((self.warmup_ratio or 0.0) * self.steps)


@dataclass(frozen=True)
class CheckpointConfig:
    every: Annotated[int, NonNegative] = 0  # save a resumable DCP checkpoint every N steps; 0: only the final one
    final: bool = True  # save a DCP checkpoint at the last step
    keep: PositiveInt = 2  # how many step_* checkpoints to keep
    # auto: latest under out_dir/checkpoints; never; or a checkpoints/step_* folder
    resume: Literal["auto", "never"] | RelPath = "auto"
    export_hf: bool = True  # write out_dir/hf (safetensors, config.json, tokenizer files) at the end
    export_dtype: Literal["bf16", "fp32"] = "bf16"

    def __post_init__(self) -> None:
        if self.resume not in ("auto", "never") and not Path(self.resume).is_dir():
            raise Invalid(f"'{self.resume}' is not a directory (use auto, never, or a checkpoints/step_* "
                          "directory)", "resume")


@dataclass(frozen=True)
class LogConfig:
    every: PositiveInt = 10
    tensorboard: bool = False
    peak_tflops: Annotated[float, Positive] | Literal["auto"] = "auto"  # dense bf16 peak per device, for MFU


@dataclass(frozen=True)
class TrainConfig:
    out_dir: RelPath
    data: DataConfig
    model: ModelConfig
    train: OptimConfig
    seed: Annotated[int, NonNegative] = 0
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: EvalConfig | None = None  # evaluation during training (mixcraft/eval); null: none
    source: str = field(default="", metadata={"internal": True})  # the YAML file, for error messages

    def fail(self, where: str, msg: str) -> UserError:
        return UserError(f"{self.source}: {where}: {msg}")

    @property
    def cache_dir(self) -> Path:
        return Path(self.data.cache_dir) if self.data.cache_dir else Path(self.out_dir) / "data_cache"


def load_config(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read and check a trainer YAML file, with `key.sub=value` overrides applied first."""
    cfg = schema.load(TrainConfig, Path(path), "trainer config", overrides=overrides)
    return dataclasses.replace(
        cfg, source=str(path), out_dir=_tidy(cfg.out_dir),
        data=dataclasses.replace(cfg.data, path=_tidy(cfg.data.path), cache_dir=_tidy(cfg.data.cache_dir)),
        model=dataclasses.replace(cfg.model, init_from=_tidy(cfg.model.init_from)),
        checkpoint=dataclasses.replace(cfg.checkpoint, resume=_tidy(cfg.checkpoint.resume)))


def _tidy(path: str | None) -> str | None:
    """`/repo/recipes/train/../../out/demo` -> `/repo/out/demo`, for readable logs and errors;
    URLs and the words auto/never are left alone."""
    if path is None or "://" in path or path in ("auto", "never"):
        return path
    return os.path.normpath(path)
