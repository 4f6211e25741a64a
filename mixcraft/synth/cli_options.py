"""What the `mixcraft synth` commands share (see cli.py): the shorthand flags, which only become
config overrides, building the backends, running a command's event loop, printing results."""

from __future__ import annotations

import asyncio
import functools
import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mixcraft.errors import UserError
from mixcraft.synth.backends import Backend, Usage
from mixcraft.synth.runner import BudgetReached, RunOptions, console

BUDGET_EXIT = 3
INTERRUPTED_EXIT = 130  # 128 + SIGINT, what shells report for Ctrl-C

ConfigArg = Annotated[Path, typer.Argument(help="Synth config YAML; examples in recipes/synth/.")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override one config value, KEY=VALUE with a YAML value, repeatable; e.g. --set "
                  "run.concurrency=512 --set 'backend={type: fake}'. Applied after the shorthands.")]
OutOpt = Annotated[Path | None, typer.Option(
    "--out", help="Shorthand for --set out=DIR; DIR is taken from the working directory.")]
EndpointOpt = Annotated[str | None, typer.Option(
    "--endpoint", help="Shorthand for --set backend.endpoint=URL (openai backend).")]
ModelOpt = Annotated[str | None, typer.Option(
    "--model", help="Shorthand for --set backend.model=NAME: the served model (openai backend).")]
ConcOpt = Annotated[int | None, typer.Option(
    "--concurrency", help="Shorthand for --set run.concurrency=N: requests in flight at once.")]
BudgetOpt = Annotated[int | None, typer.Option(
    "--token-budget", help="Shorthand for --set run.token_budget=N: stop starting requests after N prompt + "
                           "completion tokens; rerun the same command to continue (exit code 3).")]
ProgressOpt = Annotated[bool | None, typer.Option(
    "--progress/--no-progress", help="Shorthand for --set run.progress=true/false.", show_default=False)]


def overrides(shorthands: dict[str, Any], sets: list[str] | None) -> list[str]:
    """`key=value` overrides for `mixcraft.schema`: the shorthands that were given, then --set.
    Values are written as JSON (valid YAML), so a path with ': ' or '#' stays one string."""
    given = [f"{key}={json.dumps(value)}" for key, value in shorthands.items() if value is not None]
    return given + list(sets or [])


def cwd_path(path: Path | None) -> str | None:
    """A path given on the command line, made absolute (config paths are relative to the config)."""
    return None if path is None else str(Path(path).expanduser().resolve())


def user_errors(fn):
    """Print a UserError as one line and exit 2; a budget stop exits 3; Ctrl-C exits 130 with a
    line saying the finished samples are kept. Other errors are bugs and keep their traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            console.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except BudgetReached as exc:
            console.print(f"stopped at the token budget ({exc}); rerun the same command to continue",
                          highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(BUDGET_EXIT) from None
        except KeyboardInterrupt:
            console.print("interrupted; every finished sample is saved, rerun the same command to continue",
                          highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(INTERRUPTED_EXIT) from None

    return wrapper


def capped(run: RunOptions, backends: list[Backend]) -> RunOptions:
    """`run` with its concurrency capped by backends that serve one request at a time."""
    caps = [b.max_concurrency for b in backends if b.max_concurrency]
    return replace(run, concurrency=min([run.concurrency, *caps]))


def build_backends(cfg, models: list[str | None], usage: Usage) -> tuple[list[Backend], list[Backend]]:
    """One backend per role in `models` (None: backend.model), one per distinct model, all
    sharing `usage`; returns (per role, distinct)."""
    built: dict[str | None, Backend] = {}
    for model in models:
        if model not in built:
            if model is not None and not hasattr(cfg.backend, "model"):
                raise UserError(f"backend {cfg.backend.type_name} has no models; remove "
                                "self_lengthen.generator_model and extender_model")
            built[model] = _make_backend()(cfg.backend, usage, concurrency=cfg.run.concurrency, model=model)
    return [built[m] for m in models], list(built.values())


def run_with_backends(backends: list[Backend], usage: Usage, label: str, main) -> Any:
    """Start the backends, run `main()` (a coroutine function) on one event loop, always close
    the backends and print the usage line, even when the run stops on an error or Ctrl-C."""

    async def go():
        try:
            for b in backends:
                await b.start()
            console.print(f"{label}: " + "; ".join(b.describe() for b in backends), highlight=False)
            return await main()
        finally:
            for b in backends:
                await b.aclose()

    try:
        return asyncio.run(go())
    finally:
        print_usage(usage)


def print_usage(usage: Usage) -> None:
    u = usage.as_dict()
    if not u["requests"] and not u["errors"]:
        return
    errors = ", ".join(f"{k} {v}" for k, v in u["errors"].items()) or "none"
    console.print(
        f"requests {u['requests']:,} · prompt tokens {u['prompt_tokens']:,} · completion tokens "
        f"{u['completion_tokens']:,} · retries {u['retries']} · endpoint errors: {errors}",
        soft_wrap=True, highlight=False,
    )


def print_stages(stages: list[dict]) -> None:
    table = Table("stage", "tasks", "ok", "rejected", "backups", "top rejection reasons")
    for s in stages:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(s["reasons"].items(), key=lambda kv: -kv[1])[:3])
        table.add_row(s["name"], str(s["total"]), str(s["ok"]), str(s["rejected"]), str(s.get("backups", 0)),
                      reasons)
    console.print(table)


def print_round_summary(summary: dict) -> None:
    print_stages(summary["stages"])
    mw, out, nxt = summary["mean_words"], summary["outputs"], summary["round"] + 1
    console.print(
        f"{summary['samples']} samples; mean words {mw['initial_all']} initial -> {mw['initial_kept']} kept "
        f"-> {mw['extended_kept']} extended\nGenerator SFT data: {out['generator_sft']}\n"
        f"Extender SFT data:  {out['extender_sft']}\n"
        f"Next: build each with its own recipe (recipes/self-lengthen.yaml, recipes/self-lengthen-extender.yaml), "
        f"train both (mixcraft/synth/ROUNDS.md), then run --round {nxt} with self_lengthen.generator_model and "
        "self_lengthen.extender_model set",
        highlight=False, soft_wrap=True,
    )


def _make_backend():
    """`make_backend`, imported when a synth command runs: it pulls in aiohttp (0.27 s), which
    every other mixcraft command (a build's start-up included) would otherwise pay for."""
    from mixcraft.synth.make_backend import make_backend

    return make_backend
