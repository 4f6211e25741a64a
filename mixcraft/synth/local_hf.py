"""A local transformers model as a backend: for small models, CPU runs and tests.

The prompt is rendered with the tokenizer's chat template (or `--chat-template`), the prefill is
appended after the assistant header, and only the new tokens are decoded. One model answers one
request at a time, so the runner's concurrency is capped at 1 for this backend.
"""

from __future__ import annotations

import threading
from pathlib import Path

from mixcraft.errors import UserError
from mixcraft.synth.backends import Backend, BackendConfig, Completion, Message, SamplingParams, Usage
from mixcraft.synth.chat_template import load_chat_template

# Llama-3 Instruct ends a turn with <|eot_id|>, not with its tokenizer's eos; stopping only on eos
# would let the model run on into a made-up next turn.
_EXTRA_STOP_TOKENS = ("<|eot_id|>", "<|im_end|>", "<|end|>")


class TransformersBackend(Backend):
    name = "transformers"
    max_concurrency = 1

    def __init__(self, cfg: BackendConfig, usage: Usage | None = None):
        super().__init__(usage)
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - both are mixcraft dependencies
            raise UserError(
                f"--backend transformers needs torch and transformers ({exc}); pip install torch transformers"
            ) from exc
        if not cfg.model:
            raise UserError("--backend transformers needs --model PATH (a local model folder or a hub id)")
        if not Path(cfg.model).exists() and cfg.model.startswith((".", "/")):
            raise UserError(f"--model {cfg.model}: no such folder; pass a saved transformers model folder")
        self.torch = torch
        self.cfg = cfg
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        if cfg.chat_template:
            self.tokenizer.chat_template = load_chat_template(cfg.chat_template)
        if not self.tokenizer.chat_template:
            raise UserError(
                f"--model {cfg.model}: the tokenizer has no chat template; pass --chat-template llama3 "
                "or the path of the model's Jinja template"
            )
        dtype = "auto" if cfg.dtype == "auto" else getattr(torch, cfg.dtype)
        self.model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=dtype).to(cfg.device).eval()
        self.stop_ids = self._stop_ids()
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"transformers model {self.cfg.model} on {self.cfg.device}"

    def _stop_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id} if self.tokenizer.eos_token_id is not None else set()
        vocab = self.tokenizer.get_vocab()
        ids.update(vocab[t] for t in _EXTRA_STOP_TOKENS if t in vocab)
        return sorted(ids)

    def _chat(self, messages: list[Message], params: SamplingParams) -> Completion:
        return self._generate(messages, "", params)

    def _complete(self, messages: list[Message], prefill: str, params: SamplingParams) -> Completion:
        return self._generate(messages, prefill, params)

    def _generate(self, messages: list[Message], prefill: str, params: SamplingParams) -> Completion:
        prompt = (
            self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + prefill
        )
        # The template already wrote BOS; letting the tokenizer add another would shift the model.
        input_ids = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids.to(
            self.cfg.device
        )
        with self._lock, self.torch.no_grad():
            if params.seed is not None:
                self.torch.manual_seed(params.seed)  # generate() samples from torch's global RNG
            out = self.model.generate(
                input_ids,
                attention_mask=self.torch.ones_like(input_ids),
                do_sample=params.temperature > 0,
                temperature=params.temperature if params.temperature > 0 else None,
                top_p=params.top_p,
                top_k=params.top_k,
                repetition_penalty=params.repetition_penalty,
                max_new_tokens=params.max_tokens,
                eos_token_id=self.stop_ids or None,
                pad_token_id=self.stop_ids[0] if self.stop_ids else 0,
            )
        new = out[0, input_ids.shape[1] :].tolist()
        stopped = bool(new) and new[-1] in self.stop_ids
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        finish = "stop" if stopped or len(new) < params.max_tokens else "length"
        return Completion(text, int(input_ids.shape[1]), len(new), finish)

    def close(self) -> None:
        self.model = None
