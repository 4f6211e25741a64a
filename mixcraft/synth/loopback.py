"""A loopback OpenAI-compatible server for tests, benchmarks and offline dry runs.

It answers /v1/chat/completions (with `continue_final_message`) and /v1/completions with the
fake model's deterministic replies (mixcraft.synth.fake), applies `stop` and `max_tokens` as a
server does, and simulates serving time: `latency_s` per request plus `completion_tokens /
token_rate`. It does no real work, so one core serves 1,000+ requests in flight.

Faults, for testing the client: a scripted list (`faults`, one per POST, served first) or a
random share (`fault_rate`, seeded) of `FAULT_KINDS`: HTTP 500, a body that is not JSON, JSON
without choices, a dropped connection, and a hang (the request is accepted and never answered).

It binds 127.0.0.1 only and stops by itself: after `max_lifetime_s`, and, run as a process
(`python -m mixcraft.synth.loopback`), when the process that started it is gone. GET /stats
gives the counters a benchmark needs: requests in flight now, their time integral, completed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from mixcraft.synth.backends import SamplingParams
from mixcraft.synth.fake import fake_completion, fake_reply

FAULT_KINDS = ("http_500", "not_json", "no_choices", "drop", "hang")
_TURN = re.compile(r"<\|start_header_id\|>(\w+)<\|end_header_id\|>\n\n(.*?)(?:<\|eot_id\|>|$)", re.S)


@dataclass
class ServerOptions:
    latency_s: float = 0.0
    token_rate: float = 0.0  # completion tokens per second per request; 0: no per-token time
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    faults: list[str] = field(default_factory=list)  # scripted, served first (tests)
    seed: int = 0
    max_lifetime_s: float = 600.0
    record_bodies: bool = False


class Stats:
    """Requests in flight and the time integral of that count, to measure average concurrency."""

    def __init__(self) -> None:
        self.in_flight = self.peak = self.completed = self.requests = 0
        self.area = self.service_s = 0.0  # service_s: simulated serving time of completed requests
        self.since = time.monotonic()
        self.faults: dict[str, int] = {}

    def step(self, delta: int) -> None:
        now = time.monotonic()
        self.area += self.in_flight * (now - self.since)
        self.since, self.in_flight = now, self.in_flight + delta
        self.peak = max(self.peak, self.in_flight)

    def as_dict(self) -> dict[str, Any]:
        self.step(0)
        return {"t": self.since, "in_flight": self.in_flight, "peak": self.peak, "area": self.area,
                "completed": self.completed, "service_s": self.service_s, "requests": self.requests,
                "faults": dict(self.faults)}


def answer(route: str, body: dict) -> dict:
    """The fake model's reply to one request body, shaped like an OpenAI response."""
    params = SamplingParams(max_tokens=int(body.get("max_tokens") or 16384), stop=tuple(body.get("stop") or ()),
                            seed=body.get("seed"))
    if route.endswith("/completions") and "prompt" in body:
        turns = [(m.group(1), m.group(2)) for m in _TURN.finditer(body["prompt"])]
        messages, prefill = [{"role": r, "content": c} for r, c in turns[:-1]], turns[-1][1] if turns else ""
        done = fake_completion(fake_reply(messages, prefill, params), messages, prefill, params)
        choice: dict[str, Any] = {"text": done.text, "finish_reason": done.finish_reason}
    else:
        messages, prefill = body["messages"], ""
        if body.get("continue_final_message"):
            messages, prefill = messages[:-1], messages[-1]["content"]
        done = fake_completion(fake_reply(messages, prefill, params), messages, prefill, params)
        choice = {"message": {"role": "assistant", "content": done.text}, "finish_reason": done.finish_reason}
    usage = {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens}
    return {"choices": [choice], "usage": usage}


class LoopbackServer:
    def __init__(self, opts: ServerOptions | None = None):
        self.opts = opts or ServerOptions()
        self.stats = Stats()
        self.bodies: list[dict] = []
        self.rng = random.Random(self.opts.seed)
        self.stopping: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _fault(self) -> str | None:
        if self.opts.faults:
            return self.opts.faults.pop(0)
        if self.opts.fault_rate and self.rng.random() < self.opts.fault_rate:
            return self.rng.choice(self.opts.fault_kinds)
        return None

    async def _post(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.stats.requests += 1
        if self.opts.record_bodies:
            self.bodies.append({"route": request.path, **body})
        fault = self._fault()
        if fault:
            self.stats.faults[fault] = self.stats.faults.get(fault, 0) + 1
        self.stats.step(+1)
        try:
            return await self._reply(request, body, fault)
        finally:
            self.stats.step(-1)

    async def _reply(self, request: web.Request, body: dict, fault: str | None) -> web.StreamResponse:
        if fault == "hang":
            await self.stopping.wait()  # accepted, never answered: only the client's deadline ends it
        if fault == "drop" and request.transport is not None:
            request.transport.abort()
            raise asyncio.CancelledError  # nothing to send: the connection is gone
        if fault and fault.startswith("http_"):
            return web.json_response({"error": "injected"}, status=int(fault[5:]))
        if fault == "not_json":
            return web.Response(text="<html>proxy error</html>", content_type="text/html")
        if fault == "no_choices":
            return web.json_response({"object": "error"})
        reply = answer(request.path, body)
        rate = self.opts.token_rate
        serving_s = self.opts.latency_s + (reply["usage"]["completion_tokens"] / rate if rate else 0)
        await asyncio.sleep(serving_s)
        self.stats.completed += 1
        self.stats.service_s += serving_s
        return web.Response(text=json.dumps(reply), content_type="application/json")

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "loopback-fake"}]})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.as_dict())

    async def serve(self, ready: threading.Event | None = None, port_file: Path | None = None,
                    parent_pid: int | None = None) -> None:
        """Serve until `stop()`, `max_lifetime_s`, or the parent process is gone."""
        self.stopping, self.loop = asyncio.Event(), asyncio.get_running_loop()
        app = web.Application(client_max_size=64 << 20)
        app.add_routes([web.post("/v1/chat/completions", self._post), web.post("/v1/completions", self._post),
                        web.get("/v1/models", self._models), web.get("/stats", self._stats)])
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        if port_file:
            port_file.write_text(str(self.port))
        if ready:
            ready.set()
        deadline = time.monotonic() + self.opts.max_lifetime_s
        try:
            while not self.stopping.is_set() and time.monotonic() < deadline:
                if parent_pid and os.getppid() != parent_pid:
                    break
                try:
                    await asyncio.wait_for(self.stopping.wait(), 0.5)
                except asyncio.TimeoutError:
                    pass
        finally:
            self.stopping.set()
            await runner.cleanup()

    def stop(self) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.stopping.set)


def start_in_thread(opts: ServerOptions | None = None) -> tuple[LoopbackServer, threading.Thread]:
    """A server on its own event loop in a daemon thread (tests); `server.stop()` ends it."""
    server = LoopbackServer(opts)
    ready = threading.Event()
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(ready)), daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("loopback server did not start")
    return server, thread


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port-file", type=Path, required=True, help="Write the chosen port here.")
    ap.add_argument("--latency-s", type=float, default=0.0, help="Seconds per request.")
    ap.add_argument("--token-rate", type=float, default=0.0, help="Completion tokens/s per request (0: off).")
    ap.add_argument("--fault-rate", type=float, default=0.0, help="Share of requests that fail.")
    ap.add_argument("--seed", type=int, default=0, help="Seeds the fault draws.")
    ap.add_argument("--max-lifetime-s", type=float, default=600.0, help="Stop after this long.")
    args = ap.parse_args()
    opts = ServerOptions(latency_s=args.latency_s, token_rate=args.token_rate, fault_rate=args.fault_rate,
                         seed=args.seed, max_lifetime_s=args.max_lifetime_s)
    asyncio.run(LoopbackServer(opts).serve(port_file=args.port_file, parent_pid=os.getppid()))


if __name__ == "__main__":
    main()
