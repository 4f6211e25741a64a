"""Options and helpers shared by the `mixcraft synth` commands (see cli.py).

The option aliases keep each command's signature to what differs between commands; the sampling
defaults are Self-Lengthen's (temperature 0.7, top_p 0.8, top_k 20, repetition penalty 1.1).
"""

from __future__ import annotations

import functools
from typing import Annotated

import typer
from rich.table import Table

from mixcraft.errors import UserError
from mixcraft.synth.backends import Backend, BackendConfig, Usage, make_backend
from mixcraft.synth.runner import BudgetReached, RunOptions, console

BUDGET_EXIT = 3

# Options shared by the generators. Defaults of the sampling options are Self-Lengthen's.
BackendOpt = Annotated[
    str,
    typer.Option(
        "--backend", help="openai (any OpenAI-compatible server), transformers (local model) or fake (tests)."
    ),
]
EndpointOpt = Annotated[str, typer.Option("--endpoint", help="Base URL of the OpenAI-compatible API.")]
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        help="Served model name (openai; default: the server's first) or local path (transformers).",
    ),
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option("--api-key", envvar="OPENAI_API_KEY", help="Bearer token, if the server wants one."),
]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Seconds to wait for one response.")]
RetriesOpt = Annotated[
    int,
    typer.Option(
        "--max-retries",
        help="Retries per request on connection errors, timeouts, 429/5xx and malformed JSON.",
    ),
]
PrefillOpt = Annotated[
    str,
    typer.Option(
        "--prefill-mode",
        help="chat: continue_final_message (vLLM, SGLang); completions: render --chat-template here.",
    ),
]
TemplateOpt = Annotated[
    str | None, typer.Option("--chat-template", help="'llama3' or a Jinja file; overrides the tokenizer's.")
]
DeviceOpt = Annotated[str, typer.Option("--device", help="Torch device for --backend transformers.")]
TempOpt = Annotated[float, typer.Option("--temperature")]
TopPOpt = Annotated[float, typer.Option("--top-p")]
TopKOpt = Annotated[int, typer.Option("--top-k")]
RepOpt = Annotated[float, typer.Option("--repetition-penalty")]
ConcOpt = Annotated[
    int, typer.Option("--concurrency", help="Requests in flight at once (a local model runs one).")
]
BudgetOpt = Annotated[
    int | None,
    typer.Option(
        "--token-budget",
        help="Stop starting requests after this many prompt+completion tokens; rerun to continue.",
    ),
]
StragglerOpt = Annotated[
    float,
    typer.Option(
        "--straggler-frac",
        help="Once this share of a stage is done, give the rest --straggler-wait seconds, then cut them (1.0: never).",
    ),
]
StragglerWaitOpt = Annotated[float, typer.Option("--straggler-wait", help="Seconds granted to stragglers.")]
SeedOpt = Annotated[
    int, typer.Option("--seed", help="Seeds sampling, few-shot picks, chunk picks and the keep rule.")
]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]


def user_errors(fn):
    """Print a UserError as one line and exit 2; a budget stop exits 3. Other errors are bugs."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except BudgetReached as exc:
            console.print(
                f"[yellow]stopped at the token budget[/] ({exc}); rerun the same command to continue",
                soft_wrap=True,
            )
            raise typer.Exit(BUDGET_EXIT) from None

    return wrapper


def backend_config(
    backend, endpoint, model, api_key, timeout, max_retries, prefill_mode, chat_template, device
) -> BackendConfig:
    return BackendConfig(
        kind=backend,
        endpoint=endpoint,
        model=model,
        api_key=api_key,
        timeout_s=timeout,
        max_retries=max_retries,
        prefill_mode=prefill_mode,
        chat_template=chat_template,
        device=device,
    )


def run_options(
    concurrency, token_budget, straggler_frac, straggler_wait, progress, backends: list[Backend]
) -> RunOptions:
    if concurrency < 1:
        raise UserError(f"--concurrency {concurrency}: must be at least 1")
    caps = [b.max_concurrency for b in backends if b.max_concurrency]
    return RunOptions(
        concurrency=min([concurrency, *caps]),
        token_budget=token_budget,
        straggler_frac=straggler_frac,
        straggler_wait_s=straggler_wait,
        progress=progress,
    )


def print_usage(usage: Usage) -> None:
    u = usage.as_dict()
    if not u["requests"] and not u["errors"]:
        return
    errors = ", ".join(f"{k} {v}" for k, v in u["errors"].items()) or "none"
    console.print(
        f"requests {u['requests']:,} · prompt tokens {u['prompt_tokens']:,} · completion tokens "
        f"{u['completion_tokens']:,} · retries {u['retries']} · endpoint errors: {errors}",
        soft_wrap=True,
    )


def print_stages(stages: list[dict]) -> None:
    table = Table("stage", "tasks", "ok", "rejected", "cut", "top rejection reasons")
    for s in stages:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(s["reasons"].items(), key=lambda kv: -kv[1])[:3])
        table.add_row(
            s["name"], str(s["total"]), str(s["ok"]), str(s["rejected"]), str(s["straggler_cut"]), reasons
        )
    console.print(table)


def build_roles(base: BackendConfig, generator_model: str | None, extender_model: str | None, usage: Usage):
    """Self-Lengthen's three roles; one backend per distinct model, all sharing `usage`."""
    from mixcraft.synth.self_lengthen import Roles

    built: dict[str, Backend] = {}

    def backend_for(name: str | None) -> Backend:
        name = name or base.model
        if name not in built:
            built[name] = make_backend(BackendConfig(**{**base.__dict__, "model": name}), usage)
        return built[name]

    roles = Roles(
        base=backend_for(None), generator=backend_for(generator_model), extender=backend_for(extender_model)
    )
    return roles, list(built.values())


def print_round_summary(summary: dict) -> None:
    print_stages(summary["stages"])
    mw, out, nxt = summary["mean_words"], summary["outputs"], summary["round"] + 1
    console.print(
        f"{summary['samples']} samples; mean words {mw['initial_all']} initial -> {mw['initial_kept']} kept "
        f"-> {mw['extended_kept']} extended\nGenerator SFT data: {out['generator_sft']}\n"
        f"Extender SFT data:  {out['extender_sft']}\n"
        f"Next: train both on these files (mixcraft/synth/ROUNDS.md), then run --round {nxt} "
        "--generator-model GEN --extender-model EXT",
        highlight=False,
        soft_wrap=True,
    )
