"""The `mixcraft` command line: parse, call, print. User mistakes exit 2 with one line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mixcraft.errors import UserError

app = typer.Typer(help="Build long-context training mixtures into MDS shards, inspect them, and train on them.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
# Off a terminal rich assumes 80 columns, which folds the mixture table beyond reading.
out_console = Console(width=None if sys.stdout.isatty() else 150)
err_console = Console(stderr=True)


def _budget(recipe, source, i: int) -> str:
    """A bucket's token budget (max_tokens caps included); buckets without their own share one."""
    from mixcraft.core.mixture import bucket_budgets

    bucket = source.buckets[i]
    if bucket.proportion is None and i > 0:
        return "(shared)"
    budget = bucket_budgets(recipe, source, 1)[bucket.name]
    return "all" if budget is None else f"{budget:,.0f}"


def print_plan(recipe) -> None:
    """What `--dry-run` shows: sources, readers, filters, buckets, proportions and budgets."""
    if recipe.stage:
        st = recipe.stage
        out_console.print(f"[bold]stage {st['name']}[/] ({st['index'] + 1} of {st['of']}): {st['share']:.0%} of the "
                          f"tokens and of the documents (seeded hash in [{st['lo']:.2f}, {st['hi']:.2f}))")
    out_console.print(f"recipe [bold]{recipe.name}[/] ({recipe.path}): seq_len {recipe.seq_len:,}, "
                      f"tokenizer {recipe.tokenizer}, seed {recipe.seed}, "
                      f"total_tokens {'all' if recipe.total_tokens is None else f'{recipe.total_tokens:,}'}")
    table = Table(show_lines=False)
    for col in ("source", "reader", "input", "filters", "bucket", "min tokens", "proportion", "token budget", "tasks"):
        table.add_column(col, justify="right" if col in ("min tokens", "proportion", "token budget", "tasks")
                         else "left")
    for s in recipe.sources:
        r = s.reader
        where = r.get("dataset") or ", ".join(Path(p).name for p in r.get("paths", []))
        filters = ", ".join(f["type"] for f in s.filters) or "-"
        for i, b in enumerate(s.buckets):
            share = b.proportion if b.proportion is not None else (s.proportion if i == 0 else None)
            table.add_row(s.name if i == 0 else "", r["type"] if i == 0 else "", where if i == 0 else "",
                          filters if i == 0 else "", b.name, f"{b.min_tokens:,}",
                          f"{share:.4f}" if share is not None else "(shared)",
                          _budget(recipe, s, i), str(s.tasks) if i == 0 else "")
    out_console.print(table)
    total = sum(s.proportion for s in recipe.sources)
    out_console.print(f"{len(recipe.sources)} sources, proportions sum to {total:.4f}")
    if recipe.dedup:
        kinds = [k for k in ("exact", "minhash") if recipe.dedup.get(k)]
        over = recipe.dedup.get("sources") or [s.name for s in recipe.sources]
        out_console.print(f"dedup across sources: {', '.join(kinds)} over {', '.join(over)}")
    from mixcraft.core.mixture import describe_knobs

    for line in describe_knobs(recipe):
        out_console.print(line, highlight=False)


@app.command()
def build(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file (see recipes/).")],
    out: Annotated[Path | None, typer.Option(help="Output folder; default out/<recipe name>.")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Tasks run at once (the output does not depend on it).")] = 1,
    executor: Annotated[str, typer.Option(help="Where tasks run: local, ray or slurm (slurm submits and returns).")]
    = "local",
    executor_opt: Annotated[list[str] | None, typer.Option(
        help="KEY=VALUE for the executor, repeatable. ray: address, cpus_per_task, mem_per_cpu_gb. slurm: "
             "partition (required), time, cpus_per_task, mem_per_cpu_gb, qos, job_name, env_command, "
             "max_array_size.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Resolve the recipe and print the plan; read no data.")]
    = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Read at most N documents per source (a trial run).")]
    = None,
    strict: Annotated[bool, typer.Option("--strict", help="Treat skipped input (bad lines, binary files) as errors.")]
    = False,
) -> None:
    """Read, filter, tokenize, pack and write a recipe's mixture as MDS shards."""
    from mixcraft.build.curriculum import build_curriculum, stage_recipes
    from mixcraft.recipe import load_recipe

    r = load_recipe(recipe)
    if dry_run:
        for plan in stage_recipes(r) or [r]:
            print_plan(plan)
        return
    from mixcraft.build.run import build as run_build
    from mixcraft.build.run import submit_slurm
    from mixcraft.build.executors import parse_executor_opts
    from mixcraft.report.summary import render_table

    out = out or Path("out") / r.name
    options = parse_executor_opts(executor, executor_opt or [])
    if r.stages:  # a curriculum: one complete output per stage, in OUT/<stage>/
        for m in build_curriculum(r, out, workers=workers, limit=limit, strict=strict, executor=executor,
                                  options=options):
            render_table(m, out_console)
        out_console.print(f"wrote {out} (curriculum.json; stages {', '.join(st['name'] for st in r.stages)})")
        return
    if executor == "slurm":
        jobs = submit_slurm(r, out, workers=workers, limit=limit, strict=strict, options=options)
        if jobs["finalize"] == -1:  # datatrove's mark for "every task already completed"
            out_console.print(f"{out}: the build is complete; nothing to submit")
            return
        tasks = ("every build task already finished" if jobs["tasks"] == -1
                 else f"submitted Slurm job {jobs['tasks']} (build tasks; script {jobs['script']})")
        out_console.print(f"{tasks}; job {jobs['finalize']} writes {out}/manifest.json when they all succeed. "
                          "Re-run this command to resubmit unfinished tasks.")
        return
    manifest = run_build(r, out, workers=workers, limit=limit, strict=strict, executor=executor, options=options)
    render_table(manifest, out_console)
    out_console.print(f"wrote {out} (manifest.json, recipe.resolved.yaml, "
                      f"{len(manifest['streams'])} subsets)")


@app.command()
def stats(
    out: Annotated[Path, typer.Argument(help="A build output folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the tables as JSON.")] = False,
    report: Annotated[Path | None, typer.Option(help="Write PNG plots and report.html into this folder.")] = None,
    streams: Annotated[bool, typer.Option("--streams", help="Print ProLong-style path@proportion, one a line.")]
    = False,
) -> None:
    """The mixture as built: per source and bucket, actual vs target share, lengths, drops, and why."""
    from mixcraft.report.summary import stats_command

    stats_command(out, as_json=as_json, report=report, streams=streams, console=out_console)


@app.command()
def verify(out: Annotated[Path, typer.Argument(help="A build output folder.")]) -> None:
    """Check shard hashes, span invariants, token ids < vocab size and ledger totals. Exit 1 on a fault."""
    from mixcraft.report.verify import verify_output

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
    """Decode one packed row and show each document piece with its span."""
    from mixcraft.report.inspect import show_row

    show_row(out, source=source, bucket=bucket, row=row, chars=chars, console=out_console)


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="Trainer YAML (see recipes/train/).")],
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", metavar="KEY=VALUE",
        help="Override a config value, e.g. --set train.steps=5 --set model.rope_theta=8e6 (repeatable).")] = None,
) -> None:
    """Train with the bundled FSDP trainer on a build's shards (torchrun for several GPUs)."""
    from mixcraft.train import run_train

    run_train(config, overrides or [])


def _add_synth() -> None:
    try:
        from mixcraft.synth.cli import app as synth_app
    except ImportError:
        return
    app.add_typer(synth_app, name="synth", help="Synthetic long data: Self-Lengthen and long-document QA.")


_add_synth()


def main() -> None:
    try:
        app()
    except UserError as exc:
        # markup=False: rich would read "sources[books]" or "ray[default]" as style tags and drop them.
        err_console.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted; re-run the same command to resume")
        sys.exit(130)


if __name__ == "__main__":
    main()
