"""A local transformers model as a backend: for small models, CPU runs and tests.

The prompt is rendered with the tokenizer's chat template, mixcraft's Llama-3 layout
(`chat_template: llama3`) or a Jinja file; the prefill is appended after the assistant header,
and only the new tokens are decoded. Generation runs in a worker thread so the event loop stays
free, one request at a time (the runner's concurrency is capped at 1 for this backend).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from mixcraft.errors import UserError
from mixcraft.synth.backends import (
    Backend,
    Completion,
    Message,
    SamplingParams,
    TransformersConfig,
    Usage,
    cut_at_stop,
)
from mixcraft.synth.chat_template import prompt_renderer

# Llama-3 Instruct ends a turn with <|eot_id|>, not with its tokenizer's eos; stopping only on eos
# would let the model run on into a made-up next turn.
_EXTRA_STOP_TOKENS = ("<|eot_id|>", "<|im_end|>", "<|end|>")


class TransformersBackend(Backend):
    name = "transformers"
    max_concurrency = 1

    def __init__(self, cfg: TransformersConfig, usage: Usage | None = None):
        super().__init__(usage)
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - both are mixcraft dependencies
            raise UserError(f"backend transformers needs torch and transformers ({exc}); "
                            "pip install torch transformers") from exc
        if not Path(cfg.model).is_dir():
            raise UserError(f"backend.model {cfg.model}: no such folder; give a saved transformers model "
                            "folder (download hub models first, e.g. with `huggingface-cli download`)")
        self.torch, self.cfg = torch, cfg
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        self.render = self._renderer(cfg)
        dtype = "auto" if cfg.dtype == "auto" else getattr(torch, cfg.dtype)
        self.model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=dtype).to(cfg.device).eval()
        self.stop_ids = self._stop_ids()
        self._stop_criteria: dict[tuple[str, ...], object] = {}
        self._lock = threading.Lock()

    def _renderer(self, cfg: TransformersConfig):
        if cfg.chat_template != "tokenizer":
            return prompt_renderer(cfg.chat_template)
        if not self.tokenizer.chat_template:
            raise UserError(f"backend.model {cfg.model}: the tokenizer has no chat template; set "
                            "backend.chat_template to llama3 or the path of the model's Jinja template")

        def render(messages: list[Message], prefill: str) -> str:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return text + prefill

        return render

    def describe(self) -> str:
        return f"transformers model {self.cfg.model} on {self.cfg.device}"

    def _stop_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id} if self.tokenizer.eos_token_id is not None else set()
        vocab = self.tokenizer.get_vocab()
        ids.update(vocab[t] for t in _EXTRA_STOP_TOKENS if t in vocab)
        return sorted(ids)

    def _stopping(self, stop: tuple[str, ...]):
        """transformers' stop-string criteria for `stop`, built once per distinct set: building one
        embeds the whole vocabulary (1.8 s for Llama-3's 128K tokens here), using one is cheap."""
        texts = tuple(s for s in stop if s not in _EXTRA_STOP_TOKENS)
        if not texts:
            return None
        if texts not in self._stop_criteria:
            from transformers import StoppingCriteriaList, StopStringCriteria

            self._stop_criteria[texts] = StoppingCriteriaList([StopStringCriteria(self.tokenizer, list(texts))])
        return self._stop_criteria[texts]

    async def _chat(self, messages: list[Message], params: SamplingParams) -> Completion:
        return await asyncio.to_thread(self._generate, messages, "", params)

    async def _complete(self, messages: list[Message], prefill: str, params: SamplingParams) -> Completion:
        return await asyncio.to_thread(self._generate, messages, prefill, params)

    def _generate(self, messages: list[Message], prefill: str, params: SamplingParams) -> Completion:
        # The template already wrote BOS; letting the tokenizer add another would shift the model.
        input_ids = self.tokenizer(self.render(messages, prefill), add_special_tokens=False,
                                   return_tensors="pt").input_ids.to(self.cfg.device)
        with self._lock, self.torch.no_grad():
            if params.seed is not None:
                self.torch.manual_seed(params.seed)  # generate() samples from torch's global RNG
            out = self.model.generate(
                input_ids,
                attention_mask=self.torch.ones_like(input_ids),
                do_sample=params.temperature > 0,
                temperature=params.temperature if params.temperature > 0 else None,
                top_p=params.top_p,
                top_k=params.top_k if params.top_k > 0 else None,
                repetition_penalty=params.repetition_penalty,
                max_new_tokens=params.max_tokens,
                eos_token_id=self.stop_ids or None,
                pad_token_id=self.stop_ids[0] if self.stop_ids else 0,
                stopping_criteria=self._stopping(params.stop),
            )
        new = out[0, input_ids.shape[1]:].tolist()
        text, hit = cut_at_stop(self.tokenizer.decode(new, skip_special_tokens=True), params.stop)
        stopped = hit or (bool(new) and new[-1] in self.stop_ids)
        finish = "stop" if stopped or len(new) < params.max_tokens else "length"
        return Completion(text, int(input_ids.shape[1]), len(new), finish)

    async def aclose(self) -> None:
        self.model = None
