"""An asyncio client for OpenAI-compatible servers (vLLM, SGLang, TGI, llama.cpp, OpenAI itself).

Built for keeping a server busy: one event loop holds `run.concurrency` requests in flight (1,024
and more; benchmarks/synth_throughput.py measures it), over a connection pool sized to that
concurrency. Why aiohttp and not httpx: httpx's pool re-scans every connection for every queued
request (encode/httpx#3215); in benchmarks/synth_throughput.py an httpx.AsyncClient with its
pool sized to 256 kept 22% of 256 requests in flight, this client 99.8% (and 98.9% of 1,024).

Every request has one overall deadline (`timeout_s`, connect to last byte), enforced by the
event loop (`asyncio.timeout`), so it fires even when a server accepts a request and never
answers. Why not datatrove's inference runner: it is a pipeline step that owns the document loop
and the server's lifecycle; the generators here chain dependent calls per sample (write, judge,
extend), so they need plain awaitable calls.

Prefill ("continue this assistant turn") has two modes:
- `chat`: /chat/completions with the assistant turn last and `continue_final_message: true`
  (vLLM >= 0.6.4 and SGLang honour it); no template needed on the client;
- `completions`: /completions with the prompt rendered here (`chat_template`: mixcraft's Llama-3
  layout or a Jinja file), for servers without `continue_final_message`.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
from typing import Any

import aiohttp

from mixcraft.errors import UserError
from mixcraft.synth.backends import (
    Backend,
    BackendError,
    Completion,
    Message,
    OpenAIConfig,
    SamplingParams,
    Usage,
    within,
)
from mixcraft.synth.chat_template import prompt_renderer

# Retrying a 429 or 5xx makes sense (overload, restart). 401/403/404 mean a wrong key, model or
# URL: every request would fail, so the run stops at once. Any other 4xx rejects this one request
# (a prompt over the context length, say): not retried, the task is recorded as rejected.
_RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
_CONFIG_STATUS = frozenset({401, 403, 404})
_MAX_BACKOFF_S = 30.0
# Files a process needs besides its connections: journals, the tokenizer, Python's own.
_SPARE_FILES = 256
_pools: list[int] = []  # connection-pool sizes of the backends made in this process


def ensure_open_files(n_connections: int) -> None:
    """Make room for one more pool of `n_connections` sockets: raise this process's open-file
    limit to fit every pool made so far (Self-Lengthen's roles may each have one), or say how to.

    Many shells start with a soft limit of 1,024, which 1,024 connections plus the journals
    exceed; the hard limit is usually far higher and a process may raise its own soft limit.
    """
    _pools.append(n_connections)
    need = sum(_pools) + _SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        _pools.pop()
        raise UserError(f"run.concurrency {n_connections} needs about {need} open files, but this process may "
                        f"open at most {hard} (ulimit -Hn); lower run.concurrency or raise the hard limit")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, cfg: OpenAIConfig, usage: Usage | None = None, *, concurrency: int = 1):
        super().__init__(usage)
        self.cfg = cfg
        self.base_url = cfg.endpoint.rstrip("/")
        key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.concurrency = max(1, concurrency)
        ensure_open_files(self.concurrency)
        self._reserved = True
        self.render = prompt_renderer(cfg.chat_template) if cfg.prefill_mode == "completions" else None
        self.model = cfg.model
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def describe(self) -> str:
        return (f"openai endpoint {self.base_url} model {self.model or '?'} (prefill via "
                f"{self.cfg.prefill_mode}, up to {self.concurrency} connections)")

    def session(self) -> aiohttp.ClientSession:
        """The connection pool of the running event loop: `concurrency` connections, all to one
        host, kept alive between requests (a session is tied to its loop, so a new loop gets a
        new one; tests run several loops one after another)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=self.concurrency,
                                             keepalive_timeout=60, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(
                connector=connector, headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.cfg.connect_timeout_s))
            self._loop = loop
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed and self._loop is asyncio.get_running_loop():
            await self._session.close()
        self._session = None
        if self._reserved:
            _pools.remove(self.concurrency)
            self._reserved = False

    async def start(self) -> None:
        """Fail fast on a wrong endpoint; fill in the model the server lists first if none is named."""
        if self.model:
            return
        try:
            body = await self._request("GET", "/models", None)
        except BackendError as exc:
            raise UserError(str(exc)) from exc
        models = body.get("data") if isinstance(body, dict) else None
        if not models or not isinstance(models[0], dict) or "id" not in models[0]:
            raise UserError(f"{self.base_url}/models lists no model; set backend.model")
        self.model = str(models[0]["id"])

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
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        return body

    async def _chat(self, messages: list[Message], params: SamplingParams) -> Completion:
        body = {**self._sampling(params), "messages": messages}
        return await self._request("POST", "/chat/completions", body, parse=_parse_chat)

    async def _complete(self, messages: list[Message], prefill: str, params: SamplingParams) -> Completion:
        if self.render is not None:
            body = {**self._sampling(params), "prompt": self.render(messages, prefill)}
            return await self._request("POST", "/completions", body, parse=_parse_text)
        body = {
            **self._sampling(params),
            "messages": [*messages, {"role": "assistant", "content": prefill}],
            "continue_final_message": True,
            "add_generation_prompt": False,
        }
        return await self._request("POST", "/chat/completions", body, parse=_parse_chat)

    async def _request(self, method: str, route: str, body: dict | None, parse: Any = None) -> Any:
        """One request with retries and exponential backoff; errors counted in `usage`.

        `parse` runs inside the retry loop: a body without the expected fields is retried like a
        dropped connection, since a proxy or an overloaded server can return one transiently.
        """
        url = self.base_url + route
        attempts = self.cfg.max_retries + 1
        kind = last = ""
        for attempt in range(attempts):
            try:
                answer = await within(self.cfg.timeout_s, self._once(method, url, body))
                return parse(answer) if parse else answer
            except asyncio.TimeoutError:
                kind, last = "timeout", f"no complete answer within {self.cfg.timeout_s:g} s"
            except _Retryable as exc:
                kind, last = exc.kind, str(exc)
            retry = attempt + 1 < attempts
            self.usage.record_error(kind, retried=retry)
            if retry:
                # Jitter keeps many requests from hammering a restarting server in lockstep.
                await asyncio.sleep(min(_MAX_BACKOFF_S, self.cfg.backoff_s * 2**attempt) * random.uniform(0.5, 1))
        if kind == "connect_error":
            raise BackendError(kind, f"{url}: cannot connect after {attempts} attempts ({last}); start the "
                               "server (for example `vllm serve MODEL`) or fix backend.endpoint")
        raise BackendError(kind, f"{url}: {last} (after {attempts} attempts)")

    async def _once(self, method: str, url: str, body: dict | None) -> Any:
        try:
            async with self.session().request(method, url, json=body) as resp:
                status, raw = resp.status, await resp.read()
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise _Retryable("connect_error", f"connection failed: {exc}") from exc
        except (aiohttp.ClientError, ConnectionError) as exc:  # reset, dropped, truncated answers
            raise _Retryable("transport_error", f"{type(exc).__name__}: {exc}") from exc
        text = raw.decode("utf-8", errors="replace")
        if status in _RETRY_STATUS:
            raise _Retryable(f"http_{status}", f"HTTP {status}: {text[:200]}")
        if status in _CONFIG_STATUS:
            raise UserError(f"{url}: HTTP {status}: {text[:300]}; check backend.model, backend.endpoint and "
                            f"the key in ${self.cfg.api_key_env}")
        if status >= 400:
            self.usage.record_error(f"http_{status}", retried=False)
            raise BackendError(f"http_{status}", f"{url}: HTTP {status}: {text[:300]} (if every request fails "
                               "like this, check the sampling options this server accepts)", permanent=True)
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise _Retryable("malformed_response", f"response is not JSON: {text[:120]!r}") from exc


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
