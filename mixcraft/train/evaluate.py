"""Evaluation of the trainer's models: `mixcraft eval CHECKPOINT`, and the trainer's `eval:` hook.

`mixcraft.eval` knows nothing of the trainer; it takes a `Scorer`. This module makes one from
the trainer's `Llama` (plain, or FSDP-sharded inside a run) and a KV-cached `Generator` for
free-form user tasks, loads checkpoints (an HF Llama directory, a run's `hf/` export, or a DCP
`step_*` checkpoint with the train config that made it), and runs the harness.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.nn.functional as F
from torch import Tensor
from torch.distributed.checkpoint.api import CheckpointException

from mixcraft.core.tokenize import Tok, load_tokenizer
from mixcraft.errors import UserError
from mixcraft.eval.config import EvalConfig
from mixcraft.eval.data import EvalManifest, read_eval_manifest
from mixcraft.eval.harness import evaluate
from mixcraft.eval.scoring import IGNORE, Packed, Scores, Share
from mixcraft.train.attention import select_backend
from mixcraft.train.checkpoint import latest_checkpoint
from mixcraft.train.config import ModelConfig, load_config
from mixcraft.train.data import read_manifest
from mixcraft.train.hf import hf_config, load_hf_weights
from mixcraft.train.model import Llama, ModelArgs
from mixcraft.train.origin import Origin, resolve_model_args
from mixcraft.train.parallel import compute_dtype

HEAD_CHUNK_TOKENS = 2048  # logits built 2K positions at a time: 1 GiB of fp32 at a 128K vocabulary


class LlamaScorer:
    """A `Scorer` over the trainer's Llama, computing logits only where a target is scored.

    The Llama's own forward runs (any attention backend, sharded or not); a pre-hook on
    `lm_head` takes its input, scores the wanted positions in chunks with the head's weight
    (unsharded at that moment, inside the root module's forward), and hands the head one row
    instead of T, so no (T, vocab) logits are built. A task sample at 64K tokens scores ~7
    answer tokens: the head costs nothing; for validation rows every position is scored."""

    def __init__(self, model: Llama, device: torch.device):
        self.model, self.device = model, device

    @torch.no_grad()
    def __call__(self, batch: Packed) -> Scores:
        d = self.device
        targets = batch.targets.to(d)
        want = (targets != IGNORE).nonzero().squeeze(1)
        found: dict[str, Tensor] = {}

        def head_hook(module, args):
            found["nll"], found["hit"] = head_scores(args[0][want], module.weight, targets[want])
            return (args[0][:1],)

        handle = self.model.lm_head.register_forward_pre_hook(head_hook)
        try:
            self.model(batch.input_ids.to(d), batch.position_ids.to(d), batch.cu_seqlens.to(d), batch.max_seqlen)
        finally:
            handle.remove()
        nll = torch.zeros(batch.n_tokens, dtype=torch.float32)
        hit = torch.zeros(batch.n_tokens, dtype=torch.bool)
        nll[want.cpu()], hit[want.cpu()] = found["nll"].cpu(), found["hit"].cpu()
        return Scores(nll, hit)


def head_scores(hidden: Tensor, weight: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """-log p(target) in fp32 and argmax == target, for (N, D) hidden states, in chunks."""
    nll, hit = [], []
    for start in range(0, hidden.shape[0], HEAD_CHUNK_TOKENS):
        logits = F.linear(hidden[start:start + HEAD_CHUNK_TOKENS], weight).float()
        tgt = targets[start:start + HEAD_CHUNK_TOKENS]
        nll.append(F.cross_entropy(logits, tgt, reduction="none"))
        hit.append(logits.argmax(-1) == tgt)
    if not nll:
        return hidden.new_zeros(0, dtype=torch.float32), torch.zeros(0, dtype=torch.bool, device=hidden.device)
    return torch.cat(nll), torch.cat(hit)


class KVGenerator:
    """Greedy decoding with a KV cache, through transformers' LlamaForCausalLM built on the
    same weight tensors (no copy): the prompt is encoded once, then one token per step."""

    def __init__(self, model: Llama, device: torch.device, dtype: torch.dtype, stop_ids: list[int]):
        from transformers import LlamaForCausalLM
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

        config = hf_config(model.args, dtype)
        with torch.device("meta"):
            hf = LlamaForCausalLM(config)
        state = {(k if k == "lm_head.weight" else f"model.{k}"): v for k, v in model.state_dict().items()}
        hf.load_state_dict(state, strict=True, assign=True)
        hf.model.rotary_emb = LlamaRotaryEmbedding(config=config, device=device)  # a buffer, not a weight
        self.hf, self.device, self.stop = hf.eval(), device, set(stop_ids)

    @torch.no_grad()
    def __call__(self, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
        ids = torch.tensor([prompt_ids], device=self.device)
        out = self.hf(input_ids=ids, use_cache=True, logits_to_keep=1)
        new: list[int] = []
        while True:
            token = int(out.logits[0, -1].argmax())
            if token in self.stop:
                break
            new.append(token)
            if len(new) >= max_new_tokens:
                break
            out = self.hf(input_ids=torch.tensor([[token]], device=self.device), past_key_values=out.past_key_values,
                          use_cache=True, logits_to_keep=1)
        return new


def greedy_without_cache(model: Llama, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    """The reference for `KVGenerator` and the cost it avoids: every step re-encodes the whole
    sequence (the head only at the last position, as a cached decoder would)."""
    ids = list(prompt_ids)
    device = next(model.parameters()).device
    handle = model.lm_head.register_forward_pre_hook(lambda module, args: (args[0][-1:],))
    try:
        with torch.no_grad():
            for _ in range(max_new_tokens):
                n = len(ids)
                logits = model(torch.tensor(ids, device=device), torch.arange(n, device=device),
                               torch.tensor([0, n], dtype=torch.int32, device=device), n)
                ids.append(int(logits[-1].argmax()))
    finally:
        handle.remove()
    return ids[len(prompt_ids):]


# -- checkpoints --------------------------------------------------------------------------------


def load_model(checkpoint: Path, *, config: Path | None, device: torch.device, dtype: torch.dtype) -> tuple[Llama, Path]:
    """The Llama in `checkpoint`, on `device` in `dtype`, and the folder its files came from.

    An HF Llama directory (config.json + safetensors), a training run's folder (its `hf/`
    export, else its newest DCP checkpoint), or a DCP `step_*` folder. A DCP checkpoint does
    not record the model's shape: `config` (the train YAML that wrote it) gives it."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        raise UserError(f"{checkpoint}: not a folder; give an HF Llama directory (config.json + *.safetensors), "
                        "a training run's out_dir, or a checkpoints/step_* folder")
    if not (checkpoint / "config.json").is_file() and (checkpoint / "hf" / "config.json").is_file():
        checkpoint = checkpoint / "hf"
    if (checkpoint / "config.json").is_file():
        args = resolve_model_args(ModelConfig(init_from=str(checkpoint)), Origin("hf", checkpoint),
                                  manifest_vocab=None, seq_len=0, where=f"{checkpoint}")
        model = Llama(args)
        model.load_state_dict(load_hf_weights(checkpoint, args, f"{checkpoint}"))
    else:
        step = latest_checkpoint(checkpoint / "checkpoints") if (checkpoint / "checkpoints").is_dir() else checkpoint
        if step is None or not (step / ".metadata").is_file():
            raise UserError(f"{checkpoint}: no config.json, hf/ export or DCP checkpoint here; give an HF Llama "
                            "directory, a training run's out_dir, or a checkpoints/step_* folder")
        model, checkpoint = _load_dcp(step, config), step
    model.to(device=device, dtype=dtype)
    model.configure(attention=select_backend("auto", device, str(checkpoint)), activation_checkpointing=False,
                    loss_chunk_tokens=HEAD_CHUNK_TOKENS)
    return model.eval(), checkpoint


def _load_dcp(step: Path, config: Path | None) -> Llama:
    if config is None and (step / "model.json").is_file():  # checkpoints record their model's shape
        args = resolve_model_args(ModelConfig(init_from=str(step)), Origin("checkpoint", step), manifest_vocab=None,
                                  seq_len=0, where=str(step))
        return _load_state(Llama(args), step, str(step))
    if config is None:
        raise UserError(f"{step}: a DCP checkpoint does not record the model's shape; pass --config with the "
                        "train YAML that wrote it (or give the run's hf/ export)")
    cfg = load_config(config)
    manifest = read_manifest(Path(cfg.data.path), f"{cfg.source}: data.path")
    args = resolve_model_args(cfg.model, Origin("scratch", None) if cfg.model.init_from is None else
                              Origin("hf", Path(cfg.model.init_from)), manifest_vocab=manifest.vocab_size,
                              seq_len=manifest.seq_len, where=cfg.source)
    return _load_state(Llama(args), step, str(config))


def _load_state(model: Llama, step: Path, config: str) -> Llama:
    state = {"model": model.state_dict()}
    try:  # no process group: DCP reads every shard into this one process
        dcp.load(state, checkpoint_id=str(step), no_dist=True)
    except (CheckpointException, ValueError, RuntimeError) as err:
        raise UserError(f"{step}: cannot load it as the model of {config} ({type(err).__name__}); is it the "
                        "config that trained it?") from err
    model.load_state_dict(state["model"])
    return model


# -- tokenizer ----------------------------------------------------------------------------------


def eval_tokenizer(spec: str | None, data: EvalManifest | None, checkpoint: Path, args: ModelArgs) -> Tok:
    """--tokenizer, else the build's (checked against its recorded sha256), else the checkpoint's."""
    if spec is None and data is not None:
        name = data.tokenizer.get("name")
        if not name:
            raise UserError(f"{data.out}/manifest.json names no tokenizer; pass --tokenizer")
        tok = load_tokenizer(name)
        recorded = data.tokenizer.get("file_sha256")
        if recorded and tok.file_sha256 != recorded:
            raise UserError(f"tokenizer {name!r} here differs from the one that built {data.out} (sha256 "
                            f"{tok.file_sha256[:12]} vs {recorded[:12]}); pass --tokenizer with the build's file")
    elif spec is None:
        if not (checkpoint / "tokenizer.json").is_file():
            raise UserError(f"{checkpoint}: no tokenizer.json here; pass --data OUT (its manifest names the "
                            "tokenizer) or --tokenizer")
        tok = load_tokenizer(str(checkpoint))
    else:
        tok = load_tokenizer(spec)
    if tok.vocab_size > args.vocab_size:
        raise UserError(f"tokenizer {tok.name!r} has {tok.vocab_size:,} tokens, the model only {args.vocab_size:,}: "
                        "they do not belong together")
    return tok


def write_json(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


# -- `mixcraft eval` ----------------------------------------------------------------------------


def eval_command(checkpoint: Path, *, cfg: EvalConfig, data: Path | None, config: Path | None,
                 tokenizer: str | None, device: str, progress=None) -> dict:
    """Load, evaluate, return the four-key result (the CLI writes and prints it)."""
    dev = _device(device)
    dtype = compute_dtype("auto", dev)
    model, source = load_model(checkpoint, config=config, device=dev, dtype=dtype)
    manifest = read_eval_manifest(data) if data is not None else None  # without: RULER's noise haystack
    tok = eval_tokenizer(tokenizer, manifest, source, model.args)
    generator = None
    if cfg.jsonl:
        stop = [t for t in (tok.eos_id, _eot_id(tok)) if t is not None]
        generator = KVGenerator(model, dev, dtype, stop)
    result = evaluate(LlamaScorer(model, dev), tok=tok, cfg=cfg, model_context=model.args.max_seq_len,
                      data=manifest, checkpoint=str(source), generator=generator, progress=progress)
    result["meta"]["device"] = str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev)
    result["meta"]["dtype"] = str(dtype).removeprefix("torch.")
    result["meta"]["attention"] = model.attention_backend
    result["meta"]["model"] = {"params": sum(p.numel() for p in model.parameters()),
                               "max_seq_len": model.args.max_seq_len, "rope_theta": model.args.rope_theta}
    return result


def _device(setting: str) -> torch.device:
    if setting == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is visible here (use --device cpu or auto)")
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def _eot_id(tok: Tok) -> int | None:
    return tok.hf.token_to_id("<|eot_id|>")  # Llama-3 instruct models end a turn with it


# -- the trainer's `eval:` hook -----------------------------------------------------------------


class TrainerEval:
    """Runs `cfg.eval` on the model being trained: every `eval.every` steps and after the last
    (`eval.final`). Every rank takes part (each forward of a sharded model is collective) and
    scores its share of the items; rank 0 writes OUT/eval/step_*.json, one `{"step", "eval"}`
    record to metrics.jsonl, and `eval/...` scalars to TensorBoard."""

    def __init__(self, cfg, env, model: Llama):
        ecfg = cfg.eval
        if ecfg.jsonl:
            raise UserError(f"{cfg.source}: eval.tasks: {ecfg.jsonl[0]}: user JSONL tasks need generation, which "
                            "`mixcraft eval` runs on a saved checkpoint; list synthetic tasks here")
        self.cfg, self.env, self.model, self.total = ecfg, env, model, cfg.train.steps
        self.data = read_eval_manifest(Path(cfg.data.path))
        self.tok = eval_tokenizer(None, self.data, Path(cfg.data.path), model.args)
        self.out = Path(cfg.out_dir) / "eval"

    def due(self, step: int) -> bool:
        return bool((self.cfg.every and step % self.cfg.every == 0) or (self.cfg.final and step == self.total))

    def run(self, step: int, metrics) -> dict:
        share = Share(self.env.rank, self.env.world, self._all_reduce)
        result = evaluate(LlamaScorer(self.model, self.env.device), tok=self.tok, cfg=self.cfg,
                          model_context=self.model.args.max_seq_len, data=self.data,
                          checkpoint=f"{self.out.parent} step {step}", share=share)
        if self.env.is_main:
            write_json(result, self.out / f"step_{step:08d}.json")
            scalars = eval_scalars(result)
            log_eval(metrics, step, scalars)
            shown = ", ".join(f"{k} {v:.3f}" for k, v in scalars.items() if k.count("/") == 1)
            print(f"eval step {step}: {shown} ({result['meta']['time']['seconds']:.1f} s)", flush=True)
        return result

    def _all_reduce(self, vec: Tensor) -> Tensor:
        on_device = vec.to(self.env.device)
        dist.all_reduce(on_device)
        return on_device.cpu()


def eval_scalars(result: dict) -> dict[str, float]:
    """Flat scalars: eval/val_loss/<source>, eval/task/<name>, eval/task/<name>/<length>."""
    out = {}
    for name, src in result["validation"]["sources"].items():
        if src["loss"] is not None:
            out[f"val_loss/{name}"] = src["loss"]
    for name, task in result["tasks"].items():
        out[f"task/{name}"] = task["accuracy"]
        for length, acc in task["by_length"].items():
            out[f"task/{name}/{length}"] = acc
    return out


def log_eval(metrics, step: int, scalars: dict[str, float]) -> None:
    """Append to the run's metrics.jsonl (the record keeps a `step`, so a resume trims it like the
    others) and TensorBoard."""
    if getattr(metrics, "file", None) is not None:
        metrics.file.write(json.dumps({"step": step, "eval": scalars}) + "\n")
        metrics.file.flush()
    if getattr(metrics, "tb", None) is not None:
        for key, value in scalars.items():
            metrics.tb.add_scalar(f"eval/{key}", value, step)
