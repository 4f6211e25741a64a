"""Trainer config: a YAML file checked against typed dataclasses.

Every mistake becomes one `UserError` line naming the file, the YAML path, what was wrong and
how to fix it. Relative paths in the file are relative to the working directory, like the CLI's
`--out`, so `make demo` and the recipes in recipes/train/ work from the repository root.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from mixcraft import schema
from mixcraft.errors import UserError
from mixcraft.eval.config import EvalConfig


@dataclass
class DataConfig:
    path: str  # a `mixcraft build` output directory (has manifest.json)
    # {"source/bucket": weight}; replaces the manifest's target proportions; unlisted streams are left out.
    proportions: dict[str, float] | None = None
    shuffle: bool = True
    num_workers: int = 0
    # Train on the first N tokens of each row (spans clipped). For a short-context curriculum
    # phase (Llama 2 Long's 4K->32K) and for CPU smoke runs; null keeps the full row.
    crop_tokens: int | None = None


@dataclass
class ModelConfig:
    init_from: str | None = None  # local HF Llama checkpoint dir (config.json + *.safetensors)
    dim: int | None = None
    n_layers: int | None = None
    n_heads: int | None = None
    n_kv_heads: int | None = None
    ffn_dim: int | None = None
    vocab_size: int | Literal["auto"] = "auto"  # auto: the manifest's tokenizer vocab_size
    rope_theta: float | None = None  # null: the checkpoint's (or 10000 from scratch); set it for ABF
    rope_scaling: dict[str, Any] | None = None
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    init_std: float = 0.02
    max_seq_len: int | None = None  # written to the exported config.json; default: data seq_len


@dataclass
class OptimConfig:
    steps: int
    tokens_per_step: int
    lr: float
    micro_batch_rows: int = 1
    warmup_ratio: float | None = None
    warmup_steps: int | None = None
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    grad_clip: float = 1.0
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    device: Literal["auto", "cuda", "cpu"] = "auto"
    attention: Literal["auto", "flash_attn", "varlen", "sdpa"] = "auto"
    activation_checkpointing: bool = False
    loss_chunk_tokens: int = 2048  # ProLong's block size: full 64K x 128K logits would be 32 GiB in fp32

    def warmup(self) -> int:
        """Warmup length in optimizer steps."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return round((self.warmup_ratio or 0.0) * self.steps)


@dataclass
class CheckpointConfig:
    every: int = 0  # save a resumable DCP checkpoint every N steps; 0: only the final one
    final: bool = True  # save a DCP checkpoint at the last step
    keep: int = 2  # how many step_* checkpoints to keep
    resume: str = "auto"  # auto: latest under out_dir/checkpoints; never; or a step_* directory
    export_hf: bool = True  # write out_dir/hf (safetensors + config.json) at the end
    export_dtype: Literal["bf16", "fp32"] = "bf16"


@dataclass
class LogConfig:
    every: int = 10
    tensorboard: bool = False
    peak_tflops: float | Literal["auto"] = "auto"  # dense bf16 peak per device, for MFU


@dataclass
class TrainConfig:
    out_dir: str
    data: DataConfig
    model: ModelConfig
    train: OptimConfig
    seed: int = 0
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: EvalConfig | None = None  # evaluation during training (mixcraft/eval); null: none
    source: str = ""  # the YAML file, for error messages

    def fail(self, where: str, msg: str) -> UserError:
        return UserError(f"{self.source}: {where}: {msg}")


def load_config(path: Path) -> TrainConfig:
    """Read and validate a trainer YAML file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: trainer config not found (see recipes/train/ for examples)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{line}: not valid YAML ({getattr(err, 'problem', err)})") from None
    cfg = _build(TrainConfig, raw, str(path), "")
    cfg.source = str(path)
    _check_values(cfg)
    return cfg


class _Mismatch(Exception):
    pass


def _build(cls: type, raw: Any, file: str, where: str) -> Any:
    """Make dataclass `cls` from a YAML mapping: unknown keys, missing keys and types are errors."""
    if not isinstance(raw, dict):
        raise UserError(f"{file}: {where or 'top level'}: expected a mapping, got {_show(raw)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.name != "source"}
    for key in raw:
        if key not in names:
            close = difflib.get_close_matches(str(key), sorted(names), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(sorted(names))}"
            raise UserError(f"{file}: {_join(where, key)}: unknown key ({hint})")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in raw:
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required and f.name != "source":
                raise UserError(f"{file}: {_join(where, f.name)}: required key is missing")
            continue
        hint = hints[f.name]
        if hint == EvalConfig | None and raw[f.name] is not None:  # on the shared loader already
            values[f.name] = schema.parse(EvalConfig, raw[f.name], schema.Where(file, _join(where, f.name)))
            continue
        if dataclasses.is_dataclass(hint):
            values[f.name] = _build(hint, raw[f.name], file, _join(where, f.name))
            continue
        try:
            values[f.name] = _coerce(raw[f.name], hint)
        except _Mismatch:
            raise UserError(f"{file}: {_join(where, f.name)}: expected {_describe(hint)}, "
                            f"got {_show(raw[f.name])}") from None
    return cls(**values)


def _coerce(value: Any, hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is not type(None):
                try:
                    return _coerce(value, arg)
                except _Mismatch:
                    pass
        raise _Mismatch
    if origin is Literal:
        if value in args:
            return value
        raise _Mismatch
    if origin is list:
        if not isinstance(value, list):
            raise _Mismatch
        return [_coerce(v, args[0]) for v in value]
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise _Mismatch
        return {k: _coerce(v, args[1]) for k, v in value.items()}
    return _coerce_scalar(value, hint)


def _coerce_scalar(value: Any, hint: Any) -> Any:
    if hint is Any:
        return value
    if isinstance(value, bool) and hint is not bool:  # bool is an int subclass; `steps: true` is a mistake
        raise _Mismatch
    if hint is float:
        if isinstance(value, (int, float)):
            return float(value)
        # PyYAML reads `1e-5` (no dot) as a string; the intent is unambiguous, so accept it.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise _Mismatch from None
        raise _Mismatch
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)  # 4.0e6 tokens_per_step
    if isinstance(value, hint):
        return value
    raise _Mismatch


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is list:
        return f"a list of {_describe(args[0])}s"
    if origin is dict:
        return f"a mapping of names to {_describe(args[1])}s"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             type(None): "null", Any: "anything"}
    return names.get(hint, str(hint))


def _show(value: Any) -> str:
    return f"{value!r}" if isinstance(value, (str, int, float, bool)) or value is None else type(value).__name__


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _check_values(cfg: TrainConfig) -> None:
    """Range and consistency checks the type system cannot express."""
    t, m = cfg.train, cfg.model
    positive = {
        "train.steps": t.steps, "train.tokens_per_step": t.tokens_per_step, "train.lr": t.lr,
        "train.micro_batch_rows": t.micro_batch_rows, "train.loss_chunk_tokens": t.loss_chunk_tokens,
        "log.every": cfg.log.every, "checkpoint.keep": cfg.checkpoint.keep,
    }
    for where, value in positive.items():
        if value <= 0:
            raise cfg.fail(where, f"must be positive, got {value}")
    if t.warmup_ratio is not None and t.warmup_steps is not None:
        raise cfg.fail("train.warmup_steps", "give either warmup_ratio or warmup_steps, not both")
    if t.warmup_ratio is not None and not 0 <= t.warmup_ratio < 1:
        raise cfg.fail("train.warmup_ratio", f"must be in [0, 1), got {t.warmup_ratio} (ProLong uses 0.1)")
    if t.warmup_steps is not None and not 0 <= t.warmup_steps <= t.steps:
        raise cfg.fail("train.warmup_steps", f"must be in [0, steps={t.steps}], got {t.warmup_steps}")
    if not 0 <= t.min_lr_ratio <= 1:
        raise cfg.fail("train.min_lr_ratio", f"must be in [0, 1], got {t.min_lr_ratio}")
    if len(t.betas) != 2 or not all(0 <= b < 1 for b in t.betas):
        raise cfg.fail("train.betas", f"expected two numbers in [0, 1), got {t.betas} (AdamW default: [0.9, 0.95])")
    for where, value in {"train.weight_decay": t.weight_decay, "train.grad_clip": t.grad_clip,
                         "checkpoint.every": cfg.checkpoint.every, "data.num_workers": cfg.data.num_workers}.items():
        if value < 0:
            raise cfg.fail(where, f"must be zero or positive, got {value}")
    if cfg.data.crop_tokens is not None and cfg.data.crop_tokens <= 0:
        raise cfg.fail("data.crop_tokens", f"must be positive or null, got {cfg.data.crop_tokens}")
    for name, weight in (cfg.data.proportions or {}).items():
        if weight < 0:
            raise cfg.fail(f"data.proportions.{name}", f"must be zero or positive, got {weight}")
    if isinstance(cfg.log.peak_tflops, float) and cfg.log.peak_tflops <= 0:
        raise cfg.fail("log.peak_tflops", f"must be positive or 'auto', got {cfg.log.peak_tflops}")
    if cfg.checkpoint.resume not in ("auto", "never") and not Path(cfg.checkpoint.resume).is_dir():
        raise cfg.fail("checkpoint.resume", f"'{cfg.checkpoint.resume}' is not a directory "
                       "(use auto, never, or a checkpoints/step_* directory)")
    _check_shape(cfg, m)


def _check_shape(cfg: TrainConfig, m: ModelConfig) -> None:
    shape = {"dim": m.dim, "n_layers": m.n_layers, "n_heads": m.n_heads, "n_kv_heads": m.n_kv_heads,
             "ffn_dim": m.ffn_dim}
    if m.init_from is None:
        missing = [k for k, v in shape.items() if v is None]
        if missing:
            raise cfg.fail(f"model.{missing[0]}", "required when model.init_from is not set "
                           f"(a model from scratch needs {', '.join(shape)})")
    for key, value in shape.items():
        if value is not None and value <= 0:
            raise cfg.fail(f"model.{key}", f"must be positive, got {value}")
    if m.n_heads and m.dim and m.dim % m.n_heads:
        raise cfg.fail("model.n_heads", f"dim {m.dim} is not divisible by n_heads {m.n_heads}")
    if m.n_heads and m.n_kv_heads and m.n_heads % m.n_kv_heads:
        raise cfg.fail("model.n_kv_heads", f"n_heads {m.n_heads} is not divisible by n_kv_heads {m.n_kv_heads}")
    if m.rope_theta is not None and m.rope_theta <= 0:
        raise cfg.fail("model.rope_theta", f"must be positive, got {m.rope_theta}")
