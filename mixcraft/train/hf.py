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


def hf_config(args: ModelArgs, dtype: torch.dtype, bos_token_id: int | None = None, eos_token_id: int | None = None):
    """transformers.LlamaConfig for `args`: the one thing that knows HF's key names."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=args.vocab_size, hidden_size=args.dim, intermediate_size=args.ffn_dim,
        num_hidden_layers=args.n_layers, num_attention_heads=args.n_heads, num_key_value_heads=args.n_kv_heads,
        head_dim=args.head_dim, max_position_embeddings=args.max_seq_len, rms_norm_eps=args.norm_eps,
        rope_theta=args.rope_theta, rope_scaling=args.rope_scaling, tie_word_embeddings=args.tie_embeddings,
        initializer_range=args.init_std, torch_dtype=str(dtype).removeprefix("torch."),
        architectures=["LlamaForCausalLM"], bos_token_id=bos_token_id, eos_token_id=eos_token_id)


def export_hf(state: dict[str, Tensor], args: ModelArgs, out: Path, *, dtype: torch.dtype,
              carry_from: str | Path | None = None, tokenizer_json: str | Path | None = None) -> list[str]:
    """Write `out/model.safetensors`, `config.json` (with bos/eos ids) and the tokenizer files
    from a full (unsharded) state dict, so the folder loads as-is with `from_pretrained` for
    both the model and `AutoTokenizer`. Tokenizer files come from `carry_from` (the HF checkpoint
    the run started from) or else `tokenizer_json` (the one the data was built with).
    Returns notes on what could not be included."""
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
    notes = _write_tokenizer(out, carry_from, tokenizer_json)
    bos, eos = special_ids(out, carry_from)
    hf_config(args, dtype, bos, eos).save_pretrained(str(out))  # writes config.json
    if not (out / "generation_config.json").is_file() and (bos is not None or eos is not None):
        from transformers import GenerationConfig

        GenerationConfig(bos_token_id=bos, eos_token_id=eos).save_pretrained(str(out))
    return notes


def _write_tokenizer(out: Path, carry_from: str | Path | None, tokenizer_json: str | Path | None) -> list[str]:
    if carry_from is not None:
        for name in CARRIED_FILES:
            if (Path(carry_from) / name).is_file():
                shutil.copy2(Path(carry_from) / name, out / name)
    if (out / "tokenizer.json").is_file():
        return []
    if tokenizer_json is None or not Path(tokenizer_json).is_file():
        return [f"no tokenizer files in the export: the data's tokenizer file {tokenizer_json} is not on this "
                "machine; copy its tokenizer.json beside the weights"]
    shutil.copy2(tokenizer_json, out / "tokenizer.json")
    bos, eos = _tokenizer_specials(out / "tokenizer.json")
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
              "bos_token": bos[0] if bos else None, "eos_token": eos[0] if eos else None}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return []


# Special tokens by family, most specific first (Llama 3, Llama 2 / Mistral, GPT-2 style).
BOS_TOKENS = ("<|begin_of_text|>", "<s>")
EOS_TOKENS = ("<|end_of_text|>", "</s>", "<|endoftext|>")


def _tokenizer_specials(tokenizer_json: Path) -> tuple[tuple[str, int] | None, tuple[str, int] | None]:
    """((bos token, id), (eos token, id)) found in a tokenizer.json's vocabulary, or None each."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    found = []
    for names in (BOS_TOKENS, EOS_TOKENS):
        hit = next(((t, tok.token_to_id(t)) for t in names if tok.token_to_id(t) is not None), None)
        found.append(hit)
    return found[0], found[1]


def special_ids(out: Path, carry_from: str | Path | None) -> tuple[int | None, int | None]:
    """bos/eos ids: the starting checkpoint's config.json if it names them, else the exported
    tokenizer's special tokens."""
    if carry_from is not None and (Path(carry_from) / "config.json").is_file():
        theirs = json.loads((Path(carry_from) / "config.json").read_text())
        if theirs.get("bos_token_id") is not None or theirs.get("eos_token_id") is not None:
            return theirs.get("bos_token_id"), theirs.get("eos_token_id")
    if (out / "tokenizer.json").is_file():
        bos, eos = _tokenizer_specials(out / "tokenizer.json")
        return (bos[1] if bos else None), (eos[1] if eos else None)
    return None, None
