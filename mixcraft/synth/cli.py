"""`mixcraft synth ...`: the synthetic long-data generators. Thin: load the config, run, print.

Each generator reads one YAML config (recipes/synth/*.yaml, loaded by mixcraft.synth.config);
flags only override its values. Exit codes: 0 done; 2 a user mistake (one-line message);
3 stopped at the token budget (everything generated so far is saved: rerun the same command).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mixcraft.synth.backends import Usage
from mixcraft.synth.cli_options import (
    BudgetOpt,
    ConcOpt,
    ConfigArg,
    EndpointOpt,
    ModelOpt,
    OutOpt,
    ProgressOpt,
    SetOpt,
    build_backends,
    capped,
    cwd_path,
    overrides,
    print_round_summary,
    print_stages,
    run_with_backends,
    user_errors,
)
from mixcraft.synth.config import LongQAConfig, SelfLengthenConfig, load_config
from mixcraft.synth.journal import holding_run_folder
from mixcraft.synth.long_qa import load_tasks, run_long_qa
from mixcraft.synth.longen import score_file
from mixcraft.synth.runner import console
from mixcraft.synth.self_lengthen import Roles, load_seed_instructions, run_round

app = typer.Typer(
    help="Synthetic long-context data: Self-Lengthen long outputs and Llama 2 Long document QA.",
    no_args_is_help=True,
)


@app.command("self-lengthen")
@user_errors
def self_lengthen_cmd(
    config: ConfigArg,
    set_: SetOpt = None,
    out: OutOpt = None,
    round_: Annotated[int | None, typer.Option(
        "--round", help="Shorthand for --set self_lengthen.round=K (mixcraft/synth/ROUNDS.md).")] = None,
    endpoint: EndpointOpt = None,
    model: ModelOpt = None,
    concurrency: ConcOpt = None,
    token_budget: BudgetOpt = None,
    progress: ProgressOpt = None,
) -> None:
    """Generate long-output SFT data with Self-Lengthen's Generator/Extender loop (one round).

    Writes OUT/round_K/gen_sft.jsonl (Generator data) and ext_sft.jsonl (Extender data).
    Example, round 2 against a vLLM server with the round-1 LoRA adapters:

        mixcraft synth self-lengthen recipes/synth/self-lengthen.yaml --round 2
        --set self_lengthen.generator_model=gen-r1 --set self_lengthen.extender_model=ext-r1
    """
    shorthands = {"out": cwd_path(out), "self_lengthen.round": round_, "backend.endpoint": endpoint,
                  "backend.model": model, "run.concurrency": concurrency, "run.token_budget": token_budget,
                  "run.progress": progress}
    cfg = load_config(SelfLengthenConfig, config, overrides(shorthands, set_))
    load_seed_instructions(cfg.seeds_path)  # a bad seeds file fails before any model loads
    usage = Usage()
    task = cfg.self_lengthen
    with holding_run_folder(Path(cfg.out)):  # before a model loads: a second run is refused at once
        per_role, built = build_backends(cfg, [None, task.generator_model, task.extender_model], usage)
        roles = Roles(*per_role)
        summary = run_with_backends(built, usage, f"self-lengthen round {task.round}",
                                    lambda: run_round(cfg, roles, capped(cfg.run, built)))
    print_round_summary(summary)


@app.command("long-qa")
@user_errors
def long_qa_cmd(
    config: ConfigArg,
    set_: SetOpt = None,
    out: OutOpt = None,
    input_: Annotated[list[Path] | None, typer.Option(
        "--input", help="Shorthand for long_qa.inputs: a .txt or .jsonl file or a folder of them, taken from "
                        "the working directory; repeatable, replaces the config's list.")] = None,
    endpoint: EndpointOpt = None,
    model: ModelOpt = None,
    concurrency: ConcOpt = None,
    token_budget: BudgetOpt = None,
    progress: ProgressOpt = None,
) -> None:
    """Self-instructed long-document QA (Llama 2 Long): document + question -> answer samples.

    Writes OUT/long_qa.jsonl, with loss on the document by default as the paper trains. Example:

        mixcraft synth long-qa recipes/synth/long-qa.yaml --input books/ --out out/long-qa
    """
    inputs = [cwd_path(p) for p in input_] if input_ else None
    shorthands = {"out": cwd_path(out), "long_qa.inputs": inputs, "backend.endpoint": endpoint,
                  "backend.model": model, "run.concurrency": concurrency, "run.token_budget": token_budget,
                  "run.progress": progress}
    cfg = load_config(LongQAConfig, config, overrides(shorthands, set_))
    loaded = load_tasks(cfg)  # input mistakes surface before a model loads
    usage = Usage()
    with holding_run_folder(Path(cfg.out)):
        (backend,), built = build_backends(cfg, [None], usage)
        summary = run_with_backends(built, usage, "long-qa",
                                    lambda: run_long_qa(cfg, backend, capped(cfg.run, built), loaded))
    print_stages([summary["stage"]])
    console.print(
        f"{summary['documents_read']} documents read, skipped {summary['skipped'] or 'none'}; "
        f"{summary['samples']} samples -> {summary['output']}",
        highlight=False, soft_wrap=True,
    )


@app.command("length-score")
@user_errors
def length_score_cmd(
    path: Annotated[Path, typer.Argument(help="JSONL with a response and its length constraint per line.")],
    response_field: Annotated[str, typer.Option(
        "--response-field", help="Field with the response text (else the last assistant message).")] = "response",
    type_field: Annotated[str, typer.Option(
        "--type-field", help="Field with the constraint type: about, above, below or range.")] = "type",
    constraint_field: Annotated[str, typer.Option(
        "--constraint-field", help="Field with the constraint text, e.g. 'about 2000 words', "
                                   "'between 500 and 800'.")] = "constraint",
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
) -> None:
    """LonGen length-following score of generated responses (1 inside the range, linear to 0).

    Example, on LonGen-formatted generations:

        mixcraft synth length-score generations.jsonl --json
    """
    scores = score_file(path, response_field=response_field, type_field=type_field,
                        constraint_field=constraint_field)
    if as_json:
        typer.echo(json.dumps(scores, indent=2))
        return
    table = Table("type", "samples", "mean score")
    for kind, row in scores.items():
        table.add_row(kind, str(row["n"]), f"{row['mean']:.3f}")
    console.print(table)
