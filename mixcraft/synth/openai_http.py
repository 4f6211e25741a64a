"""A small client for OpenAI-compatible servers (vLLM, SGLang, TGI, llama.cpp, OpenAI itself).

Why not datatrove's inference runner: it is an async pipeline step that owns the document loop
and server lifecycle, and needs the `openai` package for any non-local endpoint. The generators
here chain dependent calls per sample (write, judge, extend), so they need a plain blocking call.

Prefill ("continue this assistant turn") has two modes:
- `chat`: /chat/completions with the assistant turn last and `continue_final_message: true`
  (vLLM >= 0.6.4 and SGLang honour it); no template needed on the client;
- `completions`: /completions with the prompt rendered here from `--chat-template`, for servers
  without `continue_final_message`.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

import httpx

from mixcraft.errors import UserError
from mixcraft.synth.backends import (
    Backend,
    BackendConfig,
    BackendError,
    Completion,
    Message,
    SamplingParams,
    Usage,
)
from mixcraft.synth.chat_template import load_chat_template, render_chat

# Retrying a 429 or 5xx makes sense (overload, restart). 401/403/404 mean a wrong key, model or
# URL: every request would fail, so the run stops at once. Any other 4xx rejects this one request
# (a prompt over the context length, say): not retried, the task is recorded as rejected.
_RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
_CONFIG_STATUS = frozenset({401, 403, 404})
_MAX_BACKOFF_S = 30.0


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, cfg: BackendConfig, usage: Usage | None = None):
        super().__init__(usage)
        self.cfg = cfg
        self.base_url = cfg.endpoint.rstrip("/")
        headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
        self.client = httpx.Client(
            timeout=httpx.Timeout(cfg.timeout_s, connect=min(10.0, cfg.timeout_s)), headers=headers
        )
        if cfg.prefill_mode not in ("chat", "completions"):
            raise UserError(f"--prefill-mode {cfg.prefill_mode!r}: expected 'chat' or 'completions'")
        self.template = None
        if cfg.prefill_mode == "completions":
            if not cfg.chat_template:
                raise UserError(
                    "--prefill-mode completions renders prompts on the client and needs --chat-template "
                    "(for example --chat-template llama3, or the path of the model's Jinja template)"
                )
            self.template = load_chat_template(cfg.chat_template)
        self.model = cfg.model or self._first_served_model()

    def describe(self) -> str:
        return f"openai endpoint {self.base_url} model {self.model} (prefill via {self.cfg.prefill_mode})"

    def close(self) -> None:
        self.client.close()

    def _first_served_model(self) -> str:
        """The model the server lists first, so `--model` can be left out for one-model servers."""
        try:
            body = self._post_or_get("GET", "/models", None)
        except BackendError as exc:
            raise UserError(str(exc)) from exc
        models = body.get("data") if isinstance(body, dict) else None
        if not models or not isinstance(models[0], dict) or "id" not in models[0]:
            raise UserError(f"{self.base_url}/models lists no model; pass --model NAME")
        return str(models[0]["id"])

    def _sampling(self, params: SamplingParams) -> dict[str, Any]:
        # top_k and repetition_penalty are vLLM/SGLang extensions to the OpenAI schema; strict
        # servers reject them with HTTP 400, and that message is shown to the user as is.
        body: dict[str, Any] = {
            "model": self.model,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "top_k": params.top_k,
            "repetition_penalty": params.repetition_penalty,
            "max_tokens": params.max_tokens,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        return body

    def _chat(self, messages: list[Message], params: SamplingParams) -> Completion:
        body = {**self._sampling(params), "messages": messages}
        return self._post_or_get("POST", "/chat/completions", body, parse=_parse_chat)

    def _complete(self, messages: list[Message], prefill: str, params: SamplingParams) -> Completion:
        if self.template is not None:
            body = {**self._sampling(params), "prompt": render_chat(self.template, messages, prefill=prefill)}
            return self._post_or_get("POST", "/completions", body, parse=_parse_text)
        body = {
            **self._sampling(params),
            "messages": [*messages, {"role": "assistant", "content": prefill}],
            "continue_final_message": True,
            "add_generation_prompt": False,
        }
        return self._post_or_get("POST", "/chat/completions", body, parse=_parse_chat)

    def _post_or_get(self, method: str, route: str, body: dict | None, parse: Any = None) -> Any:
        """One request with retries and exponential backoff; errors counted in `usage`.

        `parse` runs inside the retry loop: a body without the expected fields is retried like a
        dropped connection, since a proxy or an overloaded server can return one transiently.
        """
        url = self.base_url + route
        attempts = self.cfg.max_retries + 1
        last = ""
        for attempt in range(attempts):
            try:
                answer = self._once(method, url, body)
                return parse(answer) if parse else answer
            except _Retryable as exc:
                kind, last = exc.kind, str(exc)
            retry = attempt + 1 < attempts
            self.usage.record_error(kind, retried=retry)
            if retry:
                # Jitter keeps many workers from hammering a restarting server in lockstep.
                time.sleep(min(_MAX_BACKOFF_S, self.cfg.backoff_s * 2**attempt) * random.uniform(0.5, 1.0))
        if kind == "connect_error":
            raise BackendError(
                kind,
                f"{url}: cannot connect after {attempts} attempts ({last}); start the server "
                "(for example `vllm serve MODEL`) or fix --endpoint",
            )
        raise BackendError(kind, f"{url}: {last} (after {attempts} attempts)")

    def _once(self, method: str, url: str, body: dict | None) -> Any:
        try:
            resp = self.client.request(method, url, json=body)
        except httpx.ConnectError as exc:
            raise _Retryable("connect_error", f"connection failed: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise _Retryable(
                "timeout", f"no answer within {self.cfg.timeout_s:g} s ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise _Retryable("transport_error", f"{type(exc).__name__}: {exc}") from exc
        if resp.status_code in _RETRY_STATUS:
            raise _Retryable(f"http_{resp.status_code}", f"HTTP {resp.status_code}: {resp.text[:200]}")
        if resp.status_code in _CONFIG_STATUS:
            raise UserError(
                f"{url}: HTTP {resp.status_code}: {resp.text[:300]}; check --model, --endpoint and --api-key"
            )
        if resp.status_code >= 400:
            self.usage.record_error(f"http_{resp.status_code}", retried=False)
            raise BackendError(
                f"http_{resp.status_code}",
                f"{url}: HTTP {resp.status_code}: {resp.text[:300]} (if every request fails like this, check "
                "the sampling options this server accepts)",
                permanent=True,
            )
        try:
            return resp.json()
        except json.JSONDecodeError as exc:
            raise _Retryable("malformed_response", f"response is not JSON: {resp.text[:120]!r}") from exc


class _Retryable(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _parse_chat(body: Any) -> Completion:
    return _parse_choice(body, ("message", "content"))


def _parse_text(body: Any) -> Completion:
    return _parse_choice(body, ("text",))


def _parse_choice(body: Any, path: tuple[str, ...]) -> Completion:
    try:
        choice = body["choices"][0]
        text = choice
        for key in path:
            text = text[key]
        if not isinstance(text, str):
            raise TypeError(f"it is {type(text).__name__}")
        usage = body.get("usage") or {}
        # A server that reports no usage still feeds the token budget: ~4 characters per token.
        prompt_tokens = int(usage.get("prompt_tokens", 0))
        completion_tokens = int(usage.get("completion_tokens", len(text) // 4))
        return Completion(text, prompt_tokens, completion_tokens, str(choice.get("finish_reason") or "stop"))
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        where = "choices[0]." + ".".join(path)
        raise _Retryable(
            "malformed_response", f"malformed response, no string at {where} ({exc}): {str(body)[:120]}"
        ) from exc
