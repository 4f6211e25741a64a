"""The inference backend interface the synthetic-data generators talk to.

A backend does two things, both as coroutines so that one process keeps 1,000+ requests in
flight on one event loop:
- `chat(messages, params)`: the assistant's reply to a conversation;
- `complete(messages, prefill, params)`: the continuation of an assistant turn that already starts
  with `prefill` (Self-Lengthen's Extender and few-shot instruction expansion need this).

Implementations: `OpenAIBackend` (any OpenAI-compatible server: vLLM, SGLang, TGI, ...),
`TransformersBackend` (a local model), `FakeBackend` (deterministic, for tests). Every backend
counts requests, tokens and errors in a shared `Usage`, which is what token budgets read.

The `backend:` block of a synth config is one of the `*Config` classes below, picked by its
`type` (`BACKEND_TYPES`); `make_backend` (synth/make_backend.py) builds the matching backend.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, ClassVar, Literal

from mixcraft.schema import NonNegative, Positive, Range, RelPath

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}

# Self-Lengthen's stop strings (its llm_client.py, both calls). `<|eot_id|>` and `<|im_end|>` end a
# turn on servers that do not stop on them by themselves; the `---` and blank-line forms cut the
# habit of closing a long answer with a separator and a note about the answer.
REFERENCE_STOP = ("<|eot_id|>", "\n\n---", "\n\n\n", "\n---", "---", "<|im_end|>")


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings (the `sampling:` block). Defaults are Self-Lengthen's: temperature 0.7,
    top_p 0.8, top_k 20, repetition penalty 1.1, 16,384 new tokens, its stop strings. `seed` is
    set per request by the generators, so a rerun asks the same questions with the same seeds."""

    temperature: Annotated[float, Range(ge=0, le=2)] = 0.7
    top_p: Annotated[float, Range(gt=0, le=1)] = 0.8
    top_k: Annotated[int, Range(ge=-1)] = 20  # -1: off (vLLM's spelling)
    repetition_penalty: Annotated[float, Positive] = 1.1
    max_tokens: Annotated[int, Positive] = 16384
    stop: tuple[str, ...] = REFERENCE_STOP
    seed: int | None = field(default=None, metadata={"internal": True})

    def with_seed(self, seed: int) -> SamplingParams:
        return replace(self, seed=seed)

    def with_stop(self, *extra: str) -> SamplingParams:
        return replace(self, stop=(*self.stop, *extra))


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """`text` up to the first stop string (which is dropped, as servers drop it), and whether one hit."""
    at = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:at], True) if at >= 0 else (text, False)


async def within(seconds: float, coro):
    """`await coro`, cancelled after `seconds` with `asyncio.TimeoutError`. On Python >= 3.11 a
    deadline on the running task (`asyncio.timeout`), not one more task per call as `wait_for`."""
    if hasattr(asyncio, "timeout"):
        async with asyncio.timeout(seconds):
            return await coro
    return await asyncio.wait_for(coro, seconds)


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
    """Counters shared by a backend and the runner (requests, tokens, errors by kind)."""

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
    # batches concurrent requests itself, so it is left to `run.concurrency`.
    max_concurrency: int | None = None

    def __init__(self, usage: Usage | None = None):
        self.usage = usage or Usage()

    async def start(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Check that the backend can answer (a server is up, a model is named) before any work."""

    async def chat(self, messages: list[Message], params: SamplingParams) -> Completion:
        completion = await self._chat(messages, params)
        self.usage.record(completion)
        return completion

    async def complete(self, messages: list[Message], prefill: str, params: SamplingParams) -> Completion:
        """Continue an assistant turn that starts with `prefill`; the result excludes the prefill."""
        completion = await self._complete(messages, prefill, params)
        self.usage.record(completion)
        return completion

    @abstractmethod
    async def _chat(self, messages: list[Message], params: SamplingParams) -> Completion: ...

    @abstractmethod
    async def _complete(self, messages: list[Message], prefill: str, params: SamplingParams) -> Completion: ...

    def describe(self) -> str:
        return self.name

    async def aclose(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release connections or memory; the default has nothing to release."""


# ---- the `backend:` block ---------------------------------------------------------------------


class BackendConfig:
    """Base of the `backend:` block types; `type_name` is what `type:` says."""

    type_name: ClassVar[str]


@dataclass(frozen=True)
class OpenAIConfig(BackendConfig):
    """Any OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp, OpenAI)."""

    type_name: ClassVar[str] = "openai"
    endpoint: str = "http://127.0.0.1:8000/v1"
    model: str = ""  # empty: the first model the server lists
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this variable, never from a file
    # The deadline of one request, from connecting to the last byte of the answer. 16,384 new
    # tokens at 15 tokens/s (one sequence among 256 on a busy vLLM server) take 18 minutes.
    timeout_s: Annotated[float, Positive] = 1800.0
    connect_timeout_s: Annotated[float, Positive] = 10.0
    max_retries: Annotated[int, NonNegative] = 5
    backoff_s: Annotated[float, NonNegative] = 1.0
    # chat: /chat/completions with continue_final_message (vLLM >= 0.6.4, SGLang);
    # completions: /completions with the prompt rendered here from `chat_template`.
    prefill_mode: Literal["chat", "completions"] = "chat"
    chat_template: Literal["llama3"] | RelPath = "llama3"  # llama3: mixcraft.core.chat's layout


@dataclass(frozen=True)
class TransformersConfig(BackendConfig):
    """A local transformers model: small models, CPU runs, tests. One request at a time."""

    type_name: ClassVar[str] = "transformers"
    model: RelPath  # a saved model folder (config.json, weights, tokenizer files)
    # tokenizer: the tokenizer's own template; llama3: mixcraft.core.chat's layout; or a Jinja file
    chat_template: Literal["tokenizer", "llama3"] | RelPath = "tokenizer"
    device: str = "cpu"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"


@dataclass(frozen=True)
class FakeConfig(BackendConfig):
    """Deterministic made-up answers (mixcraft.synth.fake): tests and dry runs, no model."""

    type_name: ClassVar[str] = "fake"
    delay_s: Annotated[float, NonNegative] = 0.0  # per request, to exercise concurrency


BACKEND_TYPES: dict[str, type] = {c.type_name: c for c in (OpenAIConfig, TransformersConfig, FakeConfig)}
