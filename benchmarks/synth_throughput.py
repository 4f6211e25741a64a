"""Synth client throughput and robustness against a loopback OpenAI-compatible server (issue 15).

The server (mixcraft.synth.loopback, its own process, 127.0.0.1 only, stops by itself) does no
real work: each request sleeps `--latency-s` plus `completion_tokens / --token-rate`, so the
server is never the bottleneck and what is measured is the client: mixcraft's runner and
OpenAI backend, exactly as `mixcraft synth` runs them.

1. Throughput, at concurrency 64, 256 and 1,024: a stage of single-request tasks (10 per slot),
   with the server sampled every 0.5 s. Over the steady part of the run (after the first 1.5
   service times, before the last 1.5), it prints
   - requests in flight (time average at the server) / requested concurrency, and
   - achieved / ideal request rate, ideal = concurrency / mean service time (both measured by
     the server over the window), and the client's CPU seconds per request. A request counts
     when it ends, so a window's edge can hold up to one service time of extra work: a ratio
     of 1.01 is that edge, not a client faster than ideal.
   The peer: httpx.AsyncClient (the client mixcraft used before) with its pool sized to 256,
   under the same load for as long.
2. Faults, against a server that fails `--fault-rate` of its requests (HTTP 500, not JSON, no
   choices, dropped connection, hang: accepted and never answered). A run still going after
   `--hang-limit-s` is a hang.
   a. 4,096 single-request tasks at concurrency 1,024: every task must end ok.
   b. `--faulty-runs` Self-Lengthen rounds (the CLI, concurrency 150: the issue's hang case);
      each run's Generator data is compared with a fault-free run: samples missing are lost.
3. kill -9: one round killed `--kills` times (the k-th once its journals hold k/(kills+1) of
   the fault-free run's lines), then finished; lost samples are counted against the fault-free
   run, and the bytes compared.

Requests carry the fake model's replies (300-600 words), so with the defaults a request takes
2.75 s on average (2 s + ~300 tokens at 400 tok/s): 370 requests/s at 1,024 in flight, already
far above what a real server sees (a 16K-token generation takes minutes). The client needs
0.5-1 ms of CPU per request (printed) and shares 2 cores with the server here, so a much shorter
latency makes the machine, not the client, the limit.

    python benchmarks/synth_throughput.py [--latency-s 2.0] [--token-rate 400] [--faulty-runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mixcraft.synth.backends import OpenAIConfig, SamplingParams, Usage  # noqa: E402
from mixcraft.synth.journal import Journal  # noqa: E402
from mixcraft.synth.make_backend import make_backend  # noqa: E402
from mixcraft.synth.runner import RunOptions, run_stage  # noqa: E402

ASK = [{"role": "user", "content": "Write a detailed history of the lighthouse."}]
TASKS_PER_SLOT = 10  # a steady window of ~7 service times: the window's edges stay a few % of it
GOALS = {"in_flight": 0.95, "rate": 0.90}  # at 256 and 1,024 (issue 15)
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


class Server:
    """The loopback server in its own process; `stats()` reads its counters."""

    def __init__(self, workdir: Path, *args: str):
        port_file = workdir / f"port-{time.monotonic_ns()}"
        self.proc = subprocess.Popen([sys.executable, "-m", "mixcraft.synth.loopback", "--port-file",
                                      str(port_file), "--max-lifetime-s", "900", *args], env=ENV)
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{port_file.read_text()}"

    def stats(self) -> dict:
        with urllib.request.urlopen(self.url + "/stats", timeout=10) as resp:
            return json.loads(resp.read())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _sample(url: str, samples: list[dict], stop: asyncio.Event) -> None:
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            async with session.get(url + "/stats") as resp:
                samples.append(await resp.json())
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except asyncio.TimeoutError:
                pass


async def _stage_run(url: str, concurrency: int, n_tasks: int, journal_path: Path, timeout_s: float = 1800.0):
    """One stage of `n_tasks` single-request tasks through mixcraft's runner and OpenAI backend;
    (start, end, server samples, client CPU seconds per request, stage report, usage)."""
    backend = make_backend(OpenAIConfig(endpoint=url + "/v1", model="m", timeout_s=timeout_s, backoff_s=0.01),
                           Usage(), concurrency=concurrency)

    async def work(key: str, _payload) -> dict:
        reply = await backend.chat(ASK, SamplingParams(seed=int(key[1:])))
        return {"status": "ok", "n_chars": len(reply.text)}

    samples: list[dict] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample(url, samples, stop))
    tasks = [(f"k{i:07d}", None) for i in range(n_tasks)]
    t0, cpu0 = time.monotonic(), cpu_s()
    with Journal(journal_path) as journal:
        report = await run_stage(f"c{concurrency}", tasks, work, journal, backend.usage,
                                 RunOptions(concurrency=concurrency, progress=False))
    t1, cpu1 = time.monotonic(), cpu_s()
    stop.set()
    await sampler
    await backend.aclose()
    return t0, t1, samples, (cpu1 - cpu0) / n_tasks, report, backend.usage


def _ratios(samples: list[dict], t0: float, t1: float, concurrency: int) -> dict:
    """In flight / concurrency and achieved / ideal rate over the steady part of [t0, t1]."""
    mean_service = samples[-1]["service_s"] / max(1, samples[-1]["completed"])
    lo, hi = t0 + 1.5 * mean_service, t1 - 1.5 * mean_service
    steady = [s for s in samples if lo <= s["t"] <= hi]
    a, b = steady[0], steady[-1]
    in_flight = (b["area"] - a["area"]) / (b["t"] - a["t"])
    rate = (b["completed"] - a["completed"]) / (b["t"] - a["t"])
    # Ideal: every slot always busy, at the mean service time of the requests in the window.
    ideal = concurrency / ((b["service_s"] - a["service_s"]) / max(1, b["completed"] - a["completed"]))
    return {"in_flight": in_flight, "in_flight_ratio": in_flight / concurrency, "rate": rate, "ideal": ideal,
            "rate_ratio": rate / ideal, "peak": samples[-1]["peak"], "mean_service": mean_service,
            "window_s": hi - lo}


async def _httpx_run(url: str, concurrency: int, duration_s: float) -> tuple[float, float, list[dict]]:
    """The peer: `concurrency` coroutines posting through one httpx.AsyncClient whose pool is
    sized to the concurrency, for `duration_s`."""
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    samples: list[dict] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample(url, samples, stop))
    t0 = time.monotonic()
    async with httpx.AsyncClient(limits=limits, timeout=600) as client:
        async def worker(i: int) -> None:
            while time.monotonic() - t0 < duration_s:
                body = {"model": "m", "messages": ASK, "max_tokens": 16384, "seed": i}
                (await client.post(url + "/v1/chat/completions", json=body)).json()

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    t1 = time.monotonic()
    stop.set()
    await sampler
    return t0, t1, samples


def peer(args, workdir: Path, concurrency: int = 256) -> dict:
    """httpx, the client mixcraft used before, under the same load for as long as one level above."""
    server = Server(workdir, "--latency-s", str(args.latency_s), "--token-rate", str(args.token_rate))
    duration = TASKS_PER_SLOT * (args.latency_s + 300 / args.token_rate if args.token_rate else args.latency_s)
    try:
        t0, t1, samples = asyncio.run(_httpx_run(server.url, concurrency, duration))
    finally:
        server.close()
    r = _ratios(samples, t0, t1, concurrency)
    print(f"  peer: httpx.AsyncClient, pool of {concurrency}: in flight {r['in_flight']:7.1f} / {concurrency} = "
          f"{r['in_flight_ratio']:.3f}   rate {r['rate']:6.1f}/s / ideal {r['ideal']:6.1f}/s = {r['rate_ratio']:.3f}",
          flush=True)
    return r


def throughput(args, workdir: Path) -> dict[int, dict]:
    print(f"1. throughput: server latency {args.latency_s:g} s + completion tokens / {args.token_rate:g} tok/s; "
          f"{TASKS_PER_SLOT} single-request tasks per slot", flush=True)
    results = {}
    for concurrency in args.concurrency:
        server = Server(workdir, "--latency-s", str(args.latency_s), "--token-rate", str(args.token_rate))
        try:
            t0, t1, samples, cpu_per_req, report, _ = asyncio.run(_stage_run(
                server.url, concurrency, TASKS_PER_SLOT * concurrency, workdir / f"stage-{concurrency}.jsonl"))
        finally:
            server.close()
        assert report.ok == report.total, report
        r = results[concurrency] = _ratios(samples, t0, t1, concurrency)
        print(f"  concurrency {concurrency:>5}: in flight {r['in_flight']:7.1f} / {concurrency} = "
              f"{r['in_flight_ratio']:.3f}   rate {r['rate']:6.1f}/s / ideal {r['ideal']:6.1f}/s = "
              f"{r['rate_ratio']:.3f}   peak {r['peak']}   mean service {r['mean_service']:.2f} s   "
              f"client CPU {1000 * cpu_per_req:.2f} ms/request   steady window {r['window_s']:.1f} s", flush=True)
    if args.peer and 256 in args.concurrency:
        p = peer(args, workdir)
        print(f"  mixcraft / httpx at 256: in flight {results[256]['in_flight'] / p['in_flight']:.2f}x, rate "
              f"{results[256]['rate'] / p['rate']:.2f}x", flush=True)
    return results


def _round_config(workdir: Path, name: str, url: str, concurrency: int, n: int) -> Path:
    # A 0.25 s deadline is 25x the server's 0.01 s: only a hang (or a starved event loop) reaches it.
    config = {"out": name, "backend": {"type": "openai", "endpoint": url + "/v1", "model": "m", "timeout_s": 0.25,
                                        "backoff_s": 0.01},
              "run": {"concurrency": concurrency, "progress": False, "straggler_wait_s": 5},
              "self_lengthen": {"n_instructions": n}}
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _synth(config: Path, timeout_s: float) -> subprocess.CompletedProcess | None:
    """The CLI on `config`; None when it was still running after `timeout_s` (a hang)."""
    cmd = [sys.executable, "-m", "mixcraft", "synth", "self-lengthen", str(config)]
    try:
        return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None


def _samples(workdir: Path, name: str) -> dict[str, str]:
    path = workdir / name / "round_1" / "gen_sft.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    return {r["id"]: json.dumps(r, sort_keys=True) for r in rows}


def faulty_stage(args, workdir: Path) -> dict:
    """4 x 1,024 single-request tasks at concurrency 1,024 against a faulty server: every task
    must end ok, and the stage must end (a hang would hold it past the limit)."""
    concurrency, n_tasks = 1024, 4096
    print(f"2a. faults at concurrency {concurrency}: {n_tasks} single-request tasks, {args.fault_rate:.0%} of requests "
          "failing, server latency 2 s, request deadline 8 s", flush=True)
    server = Server(workdir, "--latency-s", "2", "--fault-rate", str(args.fault_rate), "--seed", "1024")
    try:
        start = time.monotonic()
        run = _stage_run(server.url, concurrency, n_tasks, workdir / "faulty-stage.jsonl", timeout_s=8.0)
        t0, t1, samples, _, report, usage = asyncio.run(asyncio.wait_for(run, args.hang_limit_s))
        hung = False
    except asyncio.TimeoutError:
        hung, report, usage = True, None, None
    finally:
        server.close()
    lost = n_tasks if report is None else n_tasks - report.ok
    errors = dict(usage.errors) if usage else {}
    print(f"  {'HANG' if hung else 'done'} in {time.monotonic() - start:.1f} s: ok {report.ok if report else 0}/"
          f"{n_tasks}, lost {lost}, peak in flight {samples[-1]['peak'] if not hung else '?'}, retried "
          f"{sum(errors.values())} failed requests ({', '.join(f'{k} {v}' for k, v in sorted(errors.items()))})",
          flush=True)
    return {"hangs": int(hung), "lost": lost}


def faults(args, workdir: Path, reference: dict[str, str]) -> dict:
    print(f"2b. faults in Self-Lengthen: {args.faulty_runs} rounds (the CLI) at concurrency 150, {args.fault_rate:.0%} "
          "of requests failing (http_500, not_json, no_choices, drop, hang); request deadline 0.25 s", flush=True)
    hangs = lost = errors = 0
    for i in range(args.faulty_runs):
        server = Server(workdir, "--latency-s", "0.01", "--fault-rate", str(args.fault_rate), "--seed", str(i))
        try:
            start = time.monotonic()
            done = _synth(_round_config(workdir, f"faulty{i}", server.url, 150, args.n_instructions),
                          args.hang_limit_s)
            wall = time.monotonic() - start
            stats = server.stats()
        finally:
            server.close()
        hangs += done is None
        errors += done is not None and done.returncode != 0
        got = _samples(workdir, f"faulty{i}")
        missing = sum(1 for k, v in reference.items() if got.get(k) != v)
        lost += missing
        print(f"  run {i + 1:>2}: {'HANG' if done is None else f'exit {done.returncode}'}  {wall:5.1f} s  "
              f"requests {stats['requests']}  faults {sum(stats['faults'].values())}  peak in flight {stats['peak']}  "
              f"samples {len(got)}/{len(reference)}  lost {missing}", flush=True)
    return {"hangs": hangs, "lost": lost, "errors": errors}


def _journal_lines(round_dir: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in round_dir.glob("*.jsonl") if "sft" not in p.name)


def kills(args, workdir: Path, reference: dict[str, str]) -> dict:
    """Kill k of `--kills` lands when the journals hold k/(kills+1) of the clean run's lines, so
    the kills are spread over the stages instead of all landing in the slowest one."""
    print(f"3. kill -9: one round at concurrency 64 killed {args.kills} times, spread over its stages, then "
          "finished", flush=True)
    total = _journal_lines(workdir / "clean" / "round_1")
    round_dir = workdir / "killed" / "round_1"
    server = Server(workdir, "--latency-s", "0.02")
    try:
        config = _round_config(workdir, "killed", server.url, 64, args.n_instructions)
        cmd = [sys.executable, "-m", "mixcraft", "synth", "self-lengthen", str(config)]
        for k in range(1, args.kills + 1):
            target = total * k // (args.kills + 1)
            proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + args.hang_limit_s
            while proc.poll() is None and _journal_lines(round_dir) < target and time.monotonic() < deadline:
                time.sleep(0.01)
            alive = proc.poll() is None
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            print(f"  kill {k}: {'killed' if alive else 'had already finished'} at {_journal_lines(round_dir)} of "
                  f"{total} journal lines", flush=True)
        done = _synth(config, args.hang_limit_s)
    finally:
        server.close()
    got = _samples(workdir, "killed")
    same = (round_dir / "gen_sft.jsonl").read_bytes() == (workdir / "clean/round_1/gen_sft.jsonl").read_bytes()
    lost = sum(1 for k, v in reference.items() if got.get(k) != v)
    print(f"  finished: exit {None if done is None else done.returncode}, samples {len(got)}/{len(reference)}, "
          f"lost {lost}, byte-identical to the uninterrupted run: {same}", flush=True)
    return {"lost": lost, "identical": same}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--latency-s", type=float, default=2.0, help="Server time per request.")
    ap.add_argument("--token-rate", type=float, default=400.0, help="Completion tokens/s per request (0: off).")
    ap.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True,
                    help="Also measure httpx.AsyncClient at 256 (the client mixcraft used before).")
    ap.add_argument("--faulty-runs", type=int, default=20)
    ap.add_argument("--fault-rate", type=float, default=0.2)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--n-instructions", type=int, default=8, help="Instructions per Self-Lengthen round.")
    ap.add_argument("--hang-limit-s", type=float, default=120.0, help="A round still running after this hangs.")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="synth-bench-"))
    start = time.monotonic()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; Python {sys.version.split()[0]}; "
          f"aiohttp {aiohttp.__version__}", flush=True)
    tp = throughput(args, workdir)
    server = Server(workdir, "--latency-s", "0.01")
    try:
        clean = _synth(_round_config(workdir, "clean", server.url, 150, args.n_instructions), args.hang_limit_s)
    finally:
        server.close()
    assert clean is not None and clean.returncode == 0, clean and clean.stderr
    reference = _samples(workdir, "clean")
    print(f"fault-free reference round: {len(reference)} Generator samples", flush=True)
    fs = faulty_stage(args, workdir)
    fl = faults(args, workdir, reference)
    fl = {"hangs": fl["hangs"] + fs["hangs"], "lost": fl["lost"] + fs["lost"], "errors": fl["errors"]}
    kl = kills(args, workdir, reference)
    report(tp, fl, kl, args)
    print(f"total {time.monotonic() - start:.0f} s; load average {os.getloadavg()[0]:.2f}", flush=True)


def report(tp: dict, fl: dict, kl: dict, args) -> None:
    print("\ngoals (issue 15)")
    checks = []
    for c in (256, 1024):
        if c in tp:
            checks.append((f"in flight / concurrency at {c}", tp[c]["in_flight_ratio"], ">= 0.95",
                           tp[c]["in_flight_ratio"] >= GOALS["in_flight"]))
    for c, r in tp.items():
        checks.append((f"achieved / ideal rate at {c}", r["rate_ratio"], ">= 0.90", r["rate_ratio"] >= GOALS["rate"]))
    checks += [(f"hangs in {args.faulty_runs + 1} faulty runs", fl["hangs"], "0", fl["hangs"] == 0),
               ("samples lost under faults", fl["lost"], "0", fl["lost"] == 0),
               (f"samples lost after {args.kills} kill -9", kl["lost"], "0", kl["lost"] == 0)]
    for name, value, goal, ok in checks:
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"  {name:<38} {shown:>7}  goal {goal:<8} {'met' if ok else 'MISSED'}")
    if not all(ok for *_, ok in checks):
        sys.exit(1)


if __name__ == "__main__":
    main()
