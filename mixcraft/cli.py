"""The `mixcraft` command line: parse, call, print. A user mistake exits 2 with one line."""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

from mixcraft import __version__
from mixcraft.build.executors import ExecutorOptions
from mixcraft.build.load import load_recipe
from mixcraft.build.publish import is_url, publish
from mixcraft.build.run import BuildOptions, build_curriculum, submit_slurm
from mixcraft.build.run import build as run_build
from mixcraft.errors import UserError
from mixcraft.report.inspect import show_row
from mixcraft.report.stats import stats_command
from mixcraft.report.summary import summarize
from mixcraft.report.table import render_plan, render_summary
from mixcraft.report.verify import verify_output
from mixcraft.synth.cli import app as synth_app
from mixcraft.train import run_train

# Off a terminal rich would assume 80 columns: a pipe or a log gets 150 unless COLUMNS says
# otherwise. Tables too wide for the width are split by column group, never cut (report/fit.py).
out_console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 150)
err_console = Console(stderr=True)


class Commands(TyperGroup):
    """Every command's `UserError` becomes one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            # markup=False: rich would read "sources[books]" or "ray[default]" as style tags and drop them.
            err_console.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None


def _version(value: bool) -> None:
    if value:
        print(f"mixcraft {__version__}")
        raise typer.Exit()


app = typer.Typer(cls=Commands, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Build long-context training mixtures into MDS shards, inspect them, and train on them.")


@app.callback()
def main_options(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                       help="Print the version and exit.")] = False) -> None:
    """Build long-context training mixtures into MDS shards, inspect them, and train on them."""


@app.command()
def build(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file (see recipes/).")],
    out: Annotated[str | None, typer.Option(help="Output folder, or an fsspec URL (s3://, gs://, file://: built in "
                                                 "--staging, then uploaded); default out/<recipe name>.")] = None,
    staging: Annotated[Path | None, typer.Option(help="Local folder a remote --out is built in first; default "
                                                      "out/.staging/<recipe name>.")] = None,
    workers: Annotated[int | None, typer.Option(
        min=1, help="Tasks run at once (the output does not depend on it). Default: every local CPU; the Ray "
                    "cluster's CPUs; no Slurm array limit.")] = None,
    executor: Annotated[str, typer.Option(help="Where tasks run: local, ray or slurm (slurm submits and returns).")]
    = "local",
    executor_opt: Annotated[list[str] | None, typer.Option(
        help="KEY=VALUE for the executor, repeatable. ray: address, cpus_per_task, mem_per_cpu_gb, tasks_per_job. "
             "slurm: "
             "partition (required), time, cpus_per_task, mem_per_cpu_gb, qos, tasks_per_job, job_name, "
             "env_command, max_array_size.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Resolve the recipe and print the plan; read no data.")]
    = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Read at most N documents per source (a trial run).")]
    = None,
    strict: Annotated[bool, typer.Option("--strict", help="Treat skipped input (bad lines, binary files) as errors.")]
    = False,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe value: KEY=VALUE, e.g. "
                                                  "total_tokens=1000000 (repeatable).")] = None,
    progress_every: Annotated[float, typer.Option(min=0.1, help="Off a terminal (a pipe, a cluster log): a dated "
                                                             "progress line every this many seconds.")] = 30.0,
) -> None:
    """Read, filter, tokenize, pack and write a recipe's mixture as MDS shards.

    Example: mixcraft build recipes/demo.yaml --workers 2
    """
    r = load_recipe(recipe, set_ or [])
    if dry_run:
        for plan in r.stage_recipes or [r]:
            render_plan(plan, out_console)
        return
    remote = out if out and is_url(out) else None
    out = (staging or Path("out") / ".staging" / r.name) if remote else Path(out or Path("out") / r.name)
    opts = BuildOptions(workers=workers, limit=limit, strict=strict, progress_every_s=progress_every,
                        executor=ExecutorOptions.parse(executor, executor_opt or []))
    if r.stages:  # a curriculum: one complete output per stage, in OUT/<stage>/
        for m in build_curriculum(r, out, opts):
            render_summary(summarize(m), m, out_console)
        if remote:
            out_console.print(f"uploaded {publish(out, remote)} files to {remote}")
        out_console.print(f"wrote {remote or out} (curriculum.json; stages {', '.join(st.name for st in r.stages)})")
        return
    if remote and executor == "slurm":
        raise UserError(f"--out {remote}: a Slurm build writes on every node; give a folder on the shared file "
                        "system, then copy it to the URL")
    if executor == "slurm":
        _submit(r, out, opts)
        return
    manifest = run_build(r, out, opts)
    render_summary(summarize(manifest), manifest, out_console)
    if remote:
        out_console.print(f"uploaded {publish(out, remote)} files to {remote}")
    out_console.print(f"wrote {remote or out} (manifest.json, recipe.resolved.yaml, {len(manifest.streams)} subsets)")


def _submit(recipe, out: Path, opts: BuildOptions) -> None:
    jobs = submit_slurm(recipe, out, opts)
    if jobs.finalize == -1:  # datatrove's mark for "every task already completed"
        out_console.print(f"{out}: the build is complete; nothing to submit")
        return
    tasks = ("every build task already finished" if jobs.tasks == -1
             else f"submitted Slurm job {jobs.tasks} (build tasks; script {jobs.script})")
    out_console.print(f"{tasks}; job {jobs.finalize} writes {out}/manifest.json when they all succeed. "
                      "Re-run this command to resubmit unfinished tasks.")


@app.command()
def stats(
    out: Annotated[Path, typer.Argument(help="A build output folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the tables as JSON.")] = False,
    report: Annotated[Path | None, typer.Option(help="Write PNG plots and report.html into this folder.")] = None,
    streams: Annotated[bool, typer.Option("--streams", help="Print ProLong-style path@proportion, one a line.")]
    = False,
    wide: Annotated[bool, typer.Option("--wide", help="One table with every column, however wide (by default a "
                                                      "table wider than the terminal is split by column group).")]
    = False,
) -> None:
    """The mixture as built: per source and bucket, actual vs target share, lengths, drops, and why.

    Example: mixcraft stats out/demo --report out/demo-report
    """
    stats_command(out, as_json=as_json, report=report, streams=streams, console=out_console, wide=wide)


@app.command()
def verify(out: Annotated[Path, typer.Argument(help="A build output folder.")]) -> None:
    """Check shard hashes, span invariants, token ids < vocab size and ledger totals. Exit 1 on a fault.

    Example: mixcraft verify out/demo
    """
    faults = verify_output(out)
    for f in faults:
        err_console.print(f"FAULT {f}", markup=False, highlight=False, soft_wrap=True)  # one line each, for grep
    if faults:
        raise typer.Exit(1)
    out_console.print(f"{out}: OK (hashes, spans, ids and ledger totals check out)")


@app.command()
def inspect(
    out: Annotated[Path, typer.Argument(help="A build output folder.")],
    source: Annotated[str | None, typer.Option(help="Source name; default the first.")] = None,
    bucket: Annotated[str | None, typer.Option(help="Bucket name; default the source's first.")] = None,
    row: Annotated[int, typer.Option(min=0, help="Row number in the subset.")] = 0,
    chars: Annotated[int, typer.Option(min=20, help="Characters shown at each end of a piece.")] = 200,
) -> None:
    """Decode one packed row: each piece's span, its document, and whether it continues across rows.

    Example: mixcraft inspect out/demo --source books --row 3
    """
    show_row(out, source=source, bucket=bucket, row=row, chars=chars, console=out_console)


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="Trainer YAML (see recipes/train/).")],
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", metavar="KEY=VALUE",
        help="Override a config value, e.g. --set train.steps=5 --set model.rope_theta=8e6 (repeatable).")] = None,
) -> None:
    """Train with the bundled FSDP trainer on a build's shards (torchrun for several GPUs).

    Example: mixcraft train recipes/train/demo-tiny.yaml --set train.steps=5
    """
    run_train(config, overrides or [])


@app.command("eval")
def eval_(
    checkpoint: Annotated[Path, typer.Argument(help="An HF Llama directory, a training run's out_dir (its hf/ "
                                                    "export), or a DCP checkpoints/step_* folder (with --config).")],
    data: Annotated[Path | None, typer.Option(help="A build output: validation loss, loss by position, and its "
                                                   "text as the haystack (without it: RULER's noise sentences).")]
    = None,
    tasks: Annotated[str | None, typer.Option(help="Comma-separated: passkey, niah_single, niah_multikey, "
                                                   "niah_multivalue, variable_tracking, common_words, or FILE.jsonl "
                                                   "(context, question, answers). Default: every synthetic task.")]
    = None,
    lengths: Annotated[str | None, typer.Option(help="Context lengths, e.g. 8K,16K,32K,64K (default: those within "
                                                     "the model's context).")] = None,
    depths: Annotated[str | None, typer.Option(help="Needle depths in [0, 1], e.g. 0,0.5,1.")] = None,
    samples: Annotated[int | None, typer.Option(help="Samples per (task, length, depth) cell (default 2).")] = None,
    validation_rows: Annotated[int | None, typer.Option(help="Rows per stream for validation loss (default 2; "
                                                             "0: all).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the task samples.")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results (validation, position_loss, "
                                                                 "tasks, meta) to this file.")] = None,
    report: Annotated[Path | None, typer.Option(help="Write PNG plots and report.html into this folder.")] = None,
    config: Annotated[Path | None, typer.Option(help="The train YAML of a DCP checkpoint (its model shape).")]
    = None,
    tokenizer: Annotated[str | None, typer.Option(help="Tokenizer (default: the build's, else the checkpoint's).")]
    = None,
    device: Annotated[str, typer.Option(help="auto, cuda or cpu.")] = "auto",
) -> None:
    """Validation loss per source, loss by position, and offline long-context tasks by length and depth.

    Example: mixcraft eval out/train/demo-tiny/hf --data out/demo --json r.json --report out/eval-report
    """
    # Here, not at the top: like `run_train`, so that importing the CLI does not import torch.
    from mixcraft.eval.cli_options import eval_config, progress_printer
    from mixcraft.eval.report import summary_lines, write_report
    from mixcraft.train.evaluate import eval_command, write_json

    cfg = eval_config(tasks=tasks, lengths=lengths, depths=depths, samples=samples, validation_rows=validation_rows,
                      seed=seed)
    result = eval_command(checkpoint, cfg=cfg, data=data, config=config, tokenizer=tokenizer, device=device,
                          progress=progress_printer(err_console))
    for line in summary_lines(result):
        out_console.print(line, highlight=False, markup=False)
    if json_out is not None:
        write_json(result, json_out)
        out_console.print(f"wrote {json_out}")
    if report is not None:
        write_report(result, report)
        out_console.print(f"wrote {report}/report.html")


app.add_typer(synth_app, name="synth", help="Synthetic long data: Self-Lengthen and long-document QA.")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted; re-run the same command to resume")
        sys.exit(130)


def entry() -> None:
    """The installed command and `python -m mixcraft`: `main`, then, after a command that
    succeeded, an exit that skips the interpreter's teardown (freeing every module and object
    the OS frees anyway: about 0.25 s after a build, benchmarks/build_throughput.py).

    Only when nothing is left to tear down: no live child process or non-daemon thread, no Ray
    client (its exit hook stops the local cluster it started), and neither torch nor streaming
    loaded (the trainer and the readers of shards: their exit hooks free shared memory). Buffers are flushed and logging
    is shut down first; every output file was closed when its command returned."""
    try:
        main()
    except SystemExit as exc:
        if exc.code not in (0, None) or not nothing_left_running():
            raise
    else:
        if not nothing_left_running():
            return
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def nothing_left_running() -> bool:
    if "torch" in sys.modules or "streaming" in sys.modules:  # their exit hooks free shared memory, GPU state
        return False
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return False
    for mp in (multiprocessing, sys.modules.get("multiprocess")):  # datatrove's executors fork with `multiprocess`
        if mp is not None and mp.active_children():
            return False
    return all(t.daemon or t is threading.main_thread() for t in threading.enumerate())


if __name__ == "__main__":
    entry()
