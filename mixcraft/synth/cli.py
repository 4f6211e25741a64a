"""`mixcraft synth ...`: the synthetic long-data generators. Thin: parse, build, run, print.

Exit codes: 0 done; 2 a user mistake (one-line message); 3 stopped at --token-budget (everything
generated so far is saved: rerun the same command to continue).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mixcraft.errors import UserError
from mixcraft.synth.backends import SamplingParams, Usage, make_backend
from mixcraft.synth.cli_options import (
    ApiKeyOpt,
    BackendOpt,
    BudgetOpt,
    ConcOpt,
    DeviceOpt,
    EndpointOpt,
    ModelOpt,
    PrefillOpt,
    ProgressOpt,
    RepOpt,
    RetriesOpt,
    SeedOpt,
    StragglerOpt,
    StragglerWaitOpt,
    TemplateOpt,
    TempOpt,
    TimeoutOpt,
    TopKOpt,
    TopPOpt,
    backend_config,
    build_roles,
    print_round_summary,
    print_stages,
    print_usage,
    run_options,
    user_errors,
)
from mixcraft.synth.runner import console

app = typer.Typer(
    help="Synthetic long-context data: Self-Lengthen long outputs and Llama 2 Long document QA.",
    no_args_is_help=True,
)


@app.command("self-lengthen")
@user_errors
def self_lengthen_cmd(
    out: Annotated[
        Path, typer.Option("--out", help="Work and output folder; round k lives in OUT/round_k/.")
    ],
    round_: Annotated[
        int, typer.Option("--round", help="Which round to run (see mixcraft/synth/ROUNDS.md).")
    ] = 1,
    seeds: Annotated[
        Path | None, typer.Option("--seeds", help="Seed instructions (.jsonl with 'instruction', or .txt).")
    ] = None,
    n_instructions: Annotated[
        int,
        typer.Option(
            "--n-instructions", help="Instructions to expand from the seeds (0: use the seeds as they are)."
        ),
    ] = 100,
    responses_per_instruction: Annotated[int, typer.Option("--responses-per-instruction")] = 2,
    extensions_per_response: Annotated[int, typer.Option("--extensions-per-response")] = 2,
    max_attempts: Annotated[
        int, typer.Option("--max-attempts", help="Tries per task before it is rejected.")
    ] = 10,
    extend_passes: Annotated[int, typer.Option("--extend-passes", help="Extender passes per try.")] = 3,
    min_growth: Annotated[
        float,
        typer.Option(
            "--min-growth", help="Accept an extension only above this many times the original words."
        ),
    ] = 1.2,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens")] = 4096,
    generator_model: Annotated[
        str | None, typer.Option("--generator-model", help="Model that answers (default: --model).")
    ] = None,
    extender_model: Annotated[
        str | None, typer.Option("--extender-model", help="Model that lengthens (default: --model).")
    ] = None,
    backend: BackendOpt = "openai",
    endpoint: EndpointOpt = "http://127.0.0.1:8000/v1",
    model: ModelOpt = "",
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = 600.0,
    max_retries: RetriesOpt = 5,
    prefill_mode: PrefillOpt = "chat",
    chat_template: TemplateOpt = None,
    device: DeviceOpt = "cpu",
    temperature: TempOpt = 0.7,
    top_p: TopPOpt = 0.8,
    top_k: TopKOpt = 20,
    repetition_penalty: RepOpt = 1.1,
    concurrency: ConcOpt = 8,
    token_budget: BudgetOpt = None,
    straggler_frac: StragglerOpt = 0.95,
    straggler_wait: StragglerWaitOpt = 300.0,
    seed: SeedOpt = 0,
    progress: ProgressOpt = True,
) -> None:
    """Generate long-output SFT data with the Self-Lengthen Generator/Extender loop (one round)."""
    from mixcraft.synth.self_lengthen import (
        DEFAULT_SEEDS,
        SelfLengthenConfig,
        load_seed_instructions,
        run_round,
    )

    if round_ < 1 or n_instructions < 0 or min_growth <= 1.0:
        raise UserError("--round must be >= 1, --n-instructions >= 0 and --min-growth > 1")
    load_seed_instructions(seeds or DEFAULT_SEEDS)  # a bad seeds file fails before any model loads
    base_cfg = backend_config(
        backend, endpoint, model, api_key, timeout, max_retries, prefill_mode, chat_template, device
    )
    usage = Usage()
    roles, built = build_roles(base_cfg, generator_model, extender_model, usage)
    params = SamplingParams(temperature, top_p, top_k, repetition_penalty, max_new_tokens)
    cfg = SelfLengthenConfig(
        out_dir=out,
        round=round_,
        seeds_path=seeds or DEFAULT_SEEDS,
        n_instructions=n_instructions,
        responses_per_instruction=responses_per_instruction,
        extensions_per_response=extensions_per_response,
        max_attempts=max_attempts,
        extend_passes=extend_passes,
        min_growth=min_growth,
        seed=seed,
        params=params,
        short_params=SamplingParams(temperature, top_p, top_k, repetition_penalty, 256),
    )
    opts = run_options(concurrency, token_budget, straggler_frac, straggler_wait, progress, built)
    console.print(f"self-lengthen round {round_}: " + "; ".join(b.describe() for b in built))
    try:
        summary = run_round(cfg, roles, opts)
    finally:
        print_usage(usage)
        for b in built:
            b.close()
    print_round_summary(summary)


@app.command("long-qa")
@user_errors
def long_qa_cmd(
    input_: Annotated[
        list[Path],
        typer.Option("--input", help=".txt files, folders of .txt/.jsonl, or .jsonl files (repeatable)."),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Work and output folder; samples go to OUT/long_qa.jsonl.")
    ],
    text_field: Annotated[str, typer.Option("--text-field", help="Text field of .jsonl inputs.")] = "text",
    chunk_words: Annotated[
        int, typer.Option("--chunk-words", help="Words per chunk the QA pair is about.")
    ] = 1500,
    min_doc_words: Annotated[
        int, typer.Option("--min-doc-words", help="Skip shorter documents (counted as too_short).")
    ] = 2000,
    max_doc_words: Annotated[
        int,
        typer.Option(
            "--max-doc-words", help="Truncate documents to this many words, to fit the training context."
        ),
    ] = 24000,
    pairs_per_doc: Annotated[int, typer.Option("--pairs-per-doc")] = 2,
    answer_style: Annotated[
        str, typer.Option("--answer-style", help="normal, short, or both (alternating per pair).")
    ] = "both",
    loss_on_input: Annotated[
        bool,
        typer.Option("--loss-on-input/--no-loss-on-input", help="Also train on the document + question."),
    ] = False,
    max_attempts: Annotated[
        int, typer.Option("--max-attempts", help="Tries per QA pair before it is rejected.")
    ] = 5,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens")] = 512,
    backend: BackendOpt = "openai",
    endpoint: EndpointOpt = "http://127.0.0.1:8000/v1",
    model: ModelOpt = "",
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = 600.0,
    max_retries: RetriesOpt = 5,
    prefill_mode: PrefillOpt = "chat",
    chat_template: TemplateOpt = None,
    device: DeviceOpt = "cpu",
    temperature: TempOpt = 0.7,
    top_p: TopPOpt = 0.8,
    top_k: TopKOpt = 20,
    repetition_penalty: RepOpt = 1.1,
    concurrency: ConcOpt = 8,
    token_budget: BudgetOpt = None,
    straggler_frac: StragglerOpt = 0.95,
    straggler_wait: StragglerWaitOpt = 300.0,
    seed: SeedOpt = 0,
    progress: ProgressOpt = True,
) -> None:
    """Self-instructed long-document QA (Llama 2 Long): document + question -> answer samples."""
    from mixcraft.synth.long_qa import STYLES, LongQAConfig, load_tasks, run_long_qa

    if answer_style not in (*STYLES, "both"):
        raise UserError(f"--answer-style {answer_style!r}: expected normal, short or both")
    if chunk_words < 1 or pairs_per_doc < 1 or max_doc_words < chunk_words:
        raise UserError(
            "--chunk-words and --pairs-per-doc must be >= 1, and --max-doc-words >= --chunk-words"
        )
    cfg = LongQAConfig(
        out_dir=out,
        inputs=input_,
        text_field=text_field,
        chunk_words=chunk_words,
        min_doc_words=min_doc_words,
        max_doc_words=max_doc_words,
        pairs_per_doc=pairs_per_doc,
        answer_style=answer_style,
        loss_on_input=loss_on_input,
        max_attempts=max_attempts,
        seed=seed,
        params=SamplingParams(temperature, top_p, top_k, repetition_penalty, max_new_tokens),
    )
    loaded = load_tasks(cfg)  # input mistakes surface before a model loads
    usage = Usage()
    model_backend = make_backend(
        backend_config(
            backend, endpoint, model, api_key, timeout, max_retries, prefill_mode, chat_template, device
        ),
        usage,
    )
    opts = run_options(concurrency, token_budget, straggler_frac, straggler_wait, progress, [model_backend])
    console.print(f"long-qa: {model_backend.describe()}")
    try:
        summary = run_long_qa(cfg, model_backend, opts, loaded)
    finally:
        print_usage(usage)
        model_backend.close()
    print_stages([summary["stage"]])
    console.print(
        f"{summary['documents_read']} documents read, skipped {summary['skipped'] or 'none'}; "
        f"{summary['samples']} samples -> {summary['output']}",
        highlight=False,
        soft_wrap=True,
    )


@app.command("length-score")
@user_errors
def length_score_cmd(
    path: Annotated[Path, typer.Argument(help="JSONL with the response and its length constraint per line.")],
    response_field: Annotated[str, typer.Option("--response-field")] = "response",
    type_field: Annotated[str, typer.Option("--type-field", help="about | above | below | range")] = "type",
    constraint_field: Annotated[
        str, typer.Option("--constraint-field", help="e.g. 'about 2000 words', 'between 500 and 800'")
    ] = "constraint",
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
) -> None:
    """LonGen length-following score of generated responses (1 inside the range, linear to 0)."""
    from mixcraft.synth.longen import score_file

    scores = score_file(
        path, response_field=response_field, type_field=type_field, constraint_field=constraint_field
    )
    if as_json:
        typer.echo(json.dumps(scores, indent=2))
        return
    table = Table("type", "samples", "mean score")
    for kind, row in scores.items():
        table.add_row(kind, str(row["n"]), f"{row['mean']:.3f}")
    console.print(table)
