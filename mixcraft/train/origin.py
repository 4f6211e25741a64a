"""Where a run's weights come from, and the model shape that follows.

- from scratch: the config gives the shape, weights are a seeded init;
- `model.init_from` an HF Llama checkpoint (config.json + safetensors): its shape and weights;
- `model.init_from` a mixcraft checkpoint (a `checkpoints/step_*` folder, or a run's out_dir
  for its latest): its shape, weights AND AdamW state. This is ProLong's stage chaining: stage
  2 continues stage 1's model and optimizer with new data, a new RoPE theta and a new schedule,
  where starting from the bf16 HF export would lose the Adam moments.
In every case the config's `rope_theta`, `rope_scaling` and `max_seq_len` win (RoPE ABF), and
shape keys given in the config must match the checkpoint's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mixcraft.errors import UserError
from mixcraft.train.checkpoint import latest_checkpoint, read_model_args
from mixcraft.train.config import ModelConfig
from mixcraft.train.hf import read_hf_config
from mixcraft.train.model import ModelArgs

SHAPE = ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "vocab_size")


@dataclass(frozen=True)
class Origin:
    kind: Literal["scratch", "hf", "checkpoint"]
    path: Path | None  # the HF folder, or the step_* folder


def find_origin(init_from: str | None, where: str) -> Origin:
    """Classify `model.init_from`."""
    if init_from is None:
        return Origin("scratch", None)
    path = Path(init_from)
    if (path / "config.json").is_file():
        return Origin("hf", path)
    if (path / ".metadata").is_file():
        return Origin("checkpoint", path)
    for root in (path / "checkpoints", path):
        if root.is_dir() and (latest := latest_checkpoint(root)) is not None:
            return Origin("checkpoint", latest)
    raise UserError(f"{where}: model.init_from: {path} is neither an HF checkpoint (config.json + *.safetensors) "
                    "nor a mixcraft checkpoint (a checkpoints/step_* folder, or a run's out_dir)")


def resolve_model_args(m: ModelConfig, origin: Origin, *, manifest_vocab: int | None, seq_len: int,
                       where: str) -> ModelArgs:
    """The concrete model shape for this run."""
    if origin.kind == "scratch":
        vocab = manifest_vocab if m.vocab_size == "auto" else m.vocab_size
        if vocab is None:
            raise UserError(f"{where}: model.vocab_size: 'auto' needs tokenizer.vocab_size in the manifest; "
                            "give the number (e.g. 128256 for Llama 3)")
        args = ModelArgs(dim=m.dim, n_layers=m.n_layers, n_heads=m.n_heads, n_kv_heads=m.n_kv_heads,
                         ffn_dim=m.ffn_dim, vocab_size=vocab, rope_theta=m.rope_theta or 10000.0,
                         rope_scaling=m.rope_scaling, norm_eps=m.norm_eps, tie_embeddings=m.tie_embeddings,
                         init_std=m.init_std, max_seq_len=m.max_seq_len or seq_len)
    else:
        base = _hf_args(origin.path, m, where) if origin.kind == "hf" else read_model_args(origin.path, where)
        for key in SHAPE:
            mine = getattr(m, key)
            if mine not in (None, "auto") and mine != getattr(base, key):
                raise UserError(f"{where}: model.{key}: {mine} does not match the checkpoint's {getattr(base, key)} "
                                f"({origin.path}); remove the key or fix it")
        args = dataclasses.replace(
            base, rope_theta=m.rope_theta or base.rope_theta,
            rope_scaling=m.rope_scaling if m.rope_scaling is not None else base.rope_scaling,
            max_seq_len=m.max_seq_len or max(seq_len, base.max_seq_len))
    _check_rope_scaling(args, where)
    if manifest_vocab is not None and args.vocab_size < manifest_vocab:
        raise UserError(f"{where}: model vocab_size {args.vocab_size} is smaller than the data tokenizer's "
                        f"{manifest_vocab}; the data and the model use different tokenizers")
    return args


def _hf_args(path: Path, m: ModelConfig, where: str) -> ModelArgs:
    hf = read_hf_config(path, f"{where}: model.init_from")
    if hf.get("head_dim", hf["hidden_size"] // hf["num_attention_heads"]) * hf["num_attention_heads"] \
            != hf["hidden_size"]:
        raise UserError(f"{where}: model.init_from: head_dim * heads != hidden_size is not supported")
    return ModelArgs(dim=hf["hidden_size"], n_layers=hf["num_hidden_layers"], n_heads=hf["num_attention_heads"],
                     n_kv_heads=hf.get("num_key_value_heads", hf["num_attention_heads"]),
                     ffn_dim=hf["intermediate_size"], vocab_size=hf["vocab_size"],
                     rope_theta=hf.get("rope_theta", 10000.0), rope_scaling=hf.get("rope_scaling"),
                     norm_eps=hf.get("rms_norm_eps", 1e-5), tie_embeddings=hf.get("tie_word_embeddings", False),
                     init_std=hf.get("initializer_range", m.init_std),
                     max_seq_len=hf.get("max_position_embeddings", 0))


def _check_rope_scaling(args: ModelArgs, where: str) -> None:
    scaling: dict[str, Any] | None = args.rope_scaling
    if not scaling:
        args.rope_scaling = None
        return
    kind = scaling.get("rope_type", scaling.get("type"))
    needed = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
    if kind != "llama3" or any(k not in scaling for k in needed):
        raise UserError(f"{where}: model.rope_scaling: only rope_type 'llama3' with {', '.join(needed)} is "
                        f"supported, got {scaling}; set `rope_scaling: {{}}` to drop it (ABF via rope_theta)")
