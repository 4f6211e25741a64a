"""Hugging Face Llama checkpoints: read config.json + safetensors in, write them out.

Our parameter names are HF's minus the `model.` prefix (see model.py), so both directions are
a rename. The exported directory loads with `transformers.LlamaForCausalLM.from_pretrained`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mixcraft.errors import UserError
from mixcraft.train.config import ModelConfig
from mixcraft.train.model import ModelArgs

# Files that make an exported checkpoint usable as-is when the run started from one.
CARRIED_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "generation_config.json")


def read_hf_config(ckpt: Path, where: str) -> dict[str, Any]:
    path = Path(ckpt) / "config.json"
    if not path.is_file():
        raise UserError(f"{where}: {path} not found; model.init_from must be a local HF checkpoint "
                        "directory (config.json + *.safetensors), e.g. from `huggingface-cli download`")
    cfg = json.loads(path.read_text())
    if cfg.get("model_type") != "llama":
        raise UserError(f"{where}: {path}: model_type is {cfg.get('model_type')!r}; only Llama checkpoints "
                        "are supported")
    return cfg


def resolve_model_args(m: ModelConfig, *, manifest_vocab: int | None, seq_len: int, where: str) -> ModelArgs:
    """The concrete model shape: from the checkpoint when init_from is set, else from the config."""
    if m.init_from is not None:
        hf = read_hf_config(Path(m.init_from), f"{where}: model.init_from")
        theirs = {"dim": hf["hidden_size"], "n_layers": hf["num_hidden_layers"],
                  "n_heads": hf["num_attention_heads"],
                  "n_kv_heads": hf.get("num_key_value_heads", hf["num_attention_heads"]),
                  "ffn_dim": hf["intermediate_size"], "vocab_size": hf["vocab_size"]}
        for key, value in theirs.items():
            mine = getattr(m, key)
            if mine not in (None, "auto") and mine != value:
                raise UserError(f"{where}: model.{key}: {mine} does not match the checkpoint's {value} "
                                f"({m.init_from}); remove the key or fix it")
        if hf.get("head_dim", hf["hidden_size"] // hf["num_attention_heads"]) * hf["num_attention_heads"] \
                != hf["hidden_size"]:
            raise UserError(f"{where}: model.init_from: head_dim * heads != hidden_size is not supported")
        args = ModelArgs(**theirs, rope_theta=m.rope_theta or hf.get("rope_theta", 10000.0),
                         rope_scaling=m.rope_scaling if m.rope_scaling is not None else hf.get("rope_scaling"),
                         norm_eps=hf.get("rms_norm_eps", 1e-5), tie_embeddings=hf.get("tie_word_embeddings", False),
                         init_std=hf.get("initializer_range", m.init_std),
                         max_seq_len=m.max_seq_len or max(seq_len, hf.get("max_position_embeddings", 0)))
    else:
        vocab = manifest_vocab if m.vocab_size == "auto" else m.vocab_size
        if vocab is None:
            raise UserError(f"{where}: model.vocab_size: 'auto' needs tokenizer.vocab_size in the manifest; "
                            "give the number (e.g. 128256 for Llama 3)")
        args = ModelArgs(dim=m.dim, n_layers=m.n_layers, n_heads=m.n_heads, n_kv_heads=m.n_kv_heads,
                         ffn_dim=m.ffn_dim, vocab_size=vocab, rope_theta=m.rope_theta or 10000.0,
                         rope_scaling=m.rope_scaling, norm_eps=m.norm_eps, tie_embeddings=m.tie_embeddings,
                         init_std=m.init_std, max_seq_len=m.max_seq_len or seq_len)
    _check_rope_scaling(args, where)
    if manifest_vocab is not None and args.vocab_size < manifest_vocab:
        raise UserError(f"{where}: model vocab_size {args.vocab_size} is smaller than the data tokenizer's "
                        f"{manifest_vocab}; the data and the model use different tokenizers")
    return args


def _check_rope_scaling(args: ModelArgs, where: str) -> None:
    scaling = args.rope_scaling
    if not scaling:
        args.rope_scaling = None
        return
    kind = scaling.get("rope_type", scaling.get("type"))
    needed = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
    if kind != "llama3" or any(k not in scaling for k in needed):
        raise UserError(f"{where}: model.rope_scaling: only rope_type 'llama3' with {', '.join(needed)} is "
                        f"supported, got {scaling}; set `rope_scaling: {{}}` to drop it (ABF via rope_theta)")


def load_hf_weights(ckpt: Path, args: ModelArgs, where: str) -> dict[str, Tensor]:
    """fp32 state dict in our naming, from model.safetensors or a sharded index."""
    from safetensors.torch import load_file

    ckpt = Path(ckpt)
    index = ckpt / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() \
        else ["model.safetensors"]
    state: dict[str, Tensor] = {}
    for name in files:
        if not (ckpt / name).is_file():
            raise UserError(f"{where}: model.init_from: {ckpt / name} not found (only safetensors are read)")
        for key, tensor in load_file(str(ckpt / name)).items():
            state[key.removeprefix("model.")] = tensor.float()
    if args.tie_embeddings:
        state.pop("lm_head.weight", None)
    expected = set(_our_names(args))
    missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or extra:
        raise UserError(f"{where}: model.init_from: {ckpt} does not match a Llama of this shape "
                        f"(missing {missing[:3]}, unexpected {extra[:3]})")
    if args.tie_embeddings:
        state["lm_head.weight"] = state["embed_tokens.weight"]
    return state


def _our_names(args: ModelArgs) -> list[str]:
    names = ["embed_tokens.weight", "norm.weight"] + ([] if args.tie_embeddings else ["lm_head.weight"])
    per_layer = ["input_layernorm.weight", "post_attention_layernorm.weight", "mlp.gate_proj.weight",
                 "mlp.up_proj.weight", "mlp.down_proj.weight"] + \
                [f"self_attn.{p}_proj.weight" for p in "qkvo"]
    return names + [f"layers.{i}.{p}" for i in range(args.n_layers) for p in per_layer]


def hf_config(args: ModelArgs, dtype: torch.dtype):
    """transformers.LlamaConfig for `args`: the one thing that knows HF's key names."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=args.vocab_size, hidden_size=args.dim, intermediate_size=args.ffn_dim,
        num_hidden_layers=args.n_layers, num_attention_heads=args.n_heads, num_key_value_heads=args.n_kv_heads,
        head_dim=args.head_dim, max_position_embeddings=args.max_seq_len, rms_norm_eps=args.norm_eps,
        rope_theta=args.rope_theta, rope_scaling=args.rope_scaling, tie_word_embeddings=args.tie_embeddings,
        initializer_range=args.init_std, torch_dtype=str(dtype).removeprefix("torch."),
        architectures=["LlamaForCausalLM"], bos_token_id=None, eos_token_id=None)


def export_hf(state: dict[str, Tensor], args: ModelArgs, out: Path, *, dtype: torch.dtype,
              tokenizer_from: str | None = None) -> Path:
    """Write `out/model.safetensors` + `out/config.json` from a full (unsharded) state dict."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, tensor in state.items():
        if args.tie_embeddings and name == "lm_head.weight":
            continue  # HF re-ties it from embed_tokens
        hf_name = name if name == "lm_head.weight" else f"model.{name}"
        tensors[hf_name] = tensor.detach().to("cpu", dtype).contiguous()
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    hf_config(args, dtype).save_pretrained(str(out))  # writes config.json
    if tokenizer_from is not None:
        for name in CARRIED_FILES:
            if (Path(tokenizer_from) / name).is_file():
                shutil.copy2(Path(tokenizer_from) / name, out / name)
    return out
