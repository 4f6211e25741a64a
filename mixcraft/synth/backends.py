"""The inference backend interface the synthetic-data generators talk to.

A backend does two things:
- `chat(messages, params)`: the assistant's reply to a conversation;
- `complete(messages, prefill, params)`: the continuation of an assistant turn that already starts
  with `prefill` (Self-Lengthen's Extender and few-shot instruction expansion need this).

Implementations: `OpenAIBackend` (any OpenAI-compatible server: vLLM, SGLang, TGI, ...),
`TransformersBackend` (a local model), `FakeBackend` (deterministic, for tests). Every backend
counts requests, tokens and errors in a shared `Usage`, which is what token budgets read.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings. Defaults are Self-Lengthen's (temperature 0.7, top_p 0.8, top_k 20,
    repetition penalty 1.1). `seed` makes one request reproducible where the backend supports it."""

    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    repetition_penalty: float = 1.1
    max_tokens: int = 4096
    seed: int | None = None

    def with_seed(self, seed: int) -> SamplingParams:
        return replace(self, seed=seed)


@dataclass(frozen=True)
class Completion:
    """One generation. `text` excludes any prefill; `finish_reason` is "stop" or "length"."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"


class BackendError(Exception):
    """A request failed after its retries. `kind` is a snake_case counter name.

    `permanent`: the server rejected this particular request (HTTP 400, 413, 422: say a prompt
    longer than the model's context), so retrying it is pointless; the runner records the task as
    rejected instead of queueing it again.
    """

    def __init__(self, kind: str, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.kind = kind
        self.permanent = permanent


@dataclass
class Usage:
    """Thread-safe counters shared by a backend and the runner (requests, tokens, errors by kind)."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    errors: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, completion: Completion) -> None:
        with self._lock:
            self.requests += 1
            self.prompt_tokens += completion.prompt_tokens
            self.completion_tokens += completion.completion_tokens

    def record_error(self, kind: str, *, retried: bool) -> None:
        with self._lock:
            self.errors[kind] += 1
            self.retries += int(retried)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "retries": self.retries,
                "errors": dict(sorted(self.errors.items())),
            }


class Backend(ABC):
    """Chat and prefilled completion. Subclasses implement `_chat` and `_complete`."""

    name = "backend"
    # How many requests may run at once. A local model generates one at a time; an HTTP server
    # batches concurrent requests itself, so it is left to the --concurrency option.
    max_concurrency: int | None = None

    def __init__(self, usage: Usage | None = None):
        self.usage = usage or Usage()

    def chat(self, messages: list[Message], params: SamplingParams) -> Completion:
        completion = self._chat(messages, params)
        self.usage.record(completion)
        return completion

    def complete(self, messages: list[Message], prefill: str, params: SamplingParams) -> Completion:
        """Continue an assistant turn that starts with `prefill`; the result excludes the prefill."""
        completion = self._complete(messages, prefill, params)
        self.usage.record(completion)
        return completion

    @abstractmethod
    def _chat(self, messages: list[Message], params: SamplingParams) -> Completion: ...

    @abstractmethod
    def _complete(self, messages: list[Message], prefill: str, params: SamplingParams) -> Completion: ...

    def describe(self) -> str:
        return self.name

    def close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release connections or memory; the default has nothing to release."""


@dataclass
class BackendConfig:
    """What `make_backend` needs; the CLI fills it from options."""

    kind: str = "openai"  # openai | transformers | fake
    endpoint: str = "http://127.0.0.1:8000/v1"
    model: str = ""
    api_key: str | None = None
    timeout_s: float = 600.0
    max_retries: int = 5
    backoff_s: float = 1.0
    prefill_mode: str = "chat"  # chat (continue_final_message) | completions (client-side template)
    chat_template: str | None = None  # "llama3" or a path to a Jinja file
    device: str = "cpu"
    dtype: str = "auto"


def make_backend(cfg: BackendConfig, usage: Usage | None = None) -> Backend:
    """Build the backend `cfg.kind` names. Heavy imports (torch, transformers) happen only here."""
    from mixcraft.errors import UserError

    if cfg.kind == "fake":
        from mixcraft.synth.fake import FakeBackend

        return FakeBackend(usage=usage)
    if cfg.kind == "openai":
        from mixcraft.synth.openai_http import OpenAIBackend

        return OpenAIBackend(cfg, usage=usage)
    if cfg.kind == "transformers":
        from mixcraft.synth.local_hf import TransformersBackend

        return TransformersBackend(cfg, usage=usage)
    raise UserError(f"--backend {cfg.kind!r}: unknown backend (choose openai, transformers or fake)")
