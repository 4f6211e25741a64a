"""Rich tables: the mixture and the ledger of a build (`stats`), and a recipe's plan
(`build --dry-run`). Numbers are never cut or wrapped: a table too wide for the console is
split by column group (report/fit.py), and `stats --wide` keeps it whole."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mixcraft.build.plan import bucket_budget_text, describe_knobs, stage_plan
from mixcraft.core import fmt
from mixcraft.core.manifest import Manifest
from mixcraft.core.recipe import ReaderConfig, Recipe
from mixcraft.readers.base import HubParams
from mixcraft.report.fit import Col, Group, GroupedRows, fitted_tables
from mixcraft.report.rows import Lengths, Summary


def _dev(v: float | None) -> str:
    text = fmt.pp(v)
    return f"[red]{text}[/]" if v is not None and abs(v) > 1.0 else text


SOURCE, BUCKET = Col("source", text=True, no_wrap=True), Col("bucket", text=True, no_wrap=True)
MIXTURE = Group(None, tuple(Col(h) for h in ("docs", "rows", "tokens", "target", "actual", "dev pp")))
LENGTHS = Group("document lengths (tokens) and packing",
                tuple(Col(h) for h in ("len mean", "median", "p90", "split", "padding")))
DROPS = Group("documents dropped, by reason", (Col("dropped", text=True),))


def _mix_cells(r: Lengths, dropped: str) -> tuple[list[str], list[str], list[str]]:
    return ([f"{r.docs:,}", f"{r.rows:,}", f"{r.tokens:,}", fmt.pct(r.target), fmt.pct(r.actual), _dev(r.deviation_pp)],
            [fmt.count(r.len_mean), fmt.count(r.len_median), fmt.count(r.len_p90), f"{r.split:,}", f"{r.padding:,}"],
            [escape(dropped).replace(", ", "\n")])  # one reason a line: a count never wraps from its reason


def mixture_tables(s: Summary, console: Console, *, wide: bool = False) -> list[Table]:
    """Sources with their buckets beneath them (a source of one bucket is one line); split into
    tables by column group where one does not fit the console."""
    rows = GroupedRows((SOURCE, BUCKET), (MIXTURE, LENGTHS, DROPS), [])
    for src in s.sources:
        mine = s.streams_of(src.source)
        bucket = mine[0].bucket if len(mine) == 1 else "(all)"
        rows.add([escape(src.source), escape(bucket)], *_mix_cells(src, fmt.reasons(src.dropped)))
        if len(mine) > 1:
            for st in mine:
                rows.add(["", escape(f"└ {st.bucket}")], *_mix_cells(st, ""), style="dim" if st.target is None else "")
    title = (f"{s.recipe.name}: {s.seq_len:,}-token rows, {s.packed_tokens:,} tokens packed (total_tokens "
             f"{fmt.count(s.total_tokens)}); shares of packed tokens")
    return fitted_tables(rows, console, title=title, wide=wide)


LEDGER_DOCS = Group(None, tuple(Col(h) for h in ("read", "repeated", "kept", "dropped", "split")))
LEDGER_TOKENS = Group("ledger: tokens per source", tuple(Col(h) for h in ("tokens kept", "packed", "tail")))


def ledger_tables(m: Manifest, console: Console, *, wide: bool = False) -> list[Table]:
    rows = GroupedRows((SOURCE,), (LEDGER_DOCS, LEDGER_TOKENS), [])
    for name, led in m.ledger.items():
        d, t = led.docs, led.tokens
        rows.add([escape(name)], [f"{d.read:,}", f"{m.sources[name].docs_repeated:,}", f"{d.kept:,}",
                                  f"{sum(d.dropped.values()):,}", f"{d.split:,}"],
                 [f"{t.kept:,}", f"{t.packed:,}", f"{t.tail:,}"])
    return fitted_tables(rows, console, title="ledger (documents and tokens per source)", wide=wide)


def render_summary(s: Summary, m: Manifest, console: Console, *, wide: bool = False) -> None:
    for table in mixture_tables(s, console, wide=wide) + ledger_tables(m, console, wide=wide):
        console.print(table)
    for source, why in s.why.items():
        console.print(f"[bold]{escape(source)}[/]: off target: {escape(why)}", highlight=False)
    for st in m.streams:
        if st.validation is not None:
            v = st.validation
            console.print(f"validation: {v.path}/ holds {v.rows:,} rows / {v.tokens:,} tokens from {v.docs:,} held-out "
                          "documents, never trained on", highlight=False)
    pm = s.premixed
    if pm:
        console.print(f"pre-mixed: {pm.path}/ holds {pm.rows:,} rows / {pm.tokens:,} tokens interleaved in exact "
                      "proportions" + (f"; left out: {', '.join(pm.left_out)}" if pm.left_out else ""),
                      highlight=False)


PLAN_BUCKETS = Group("buckets and budgets", (Col("reader", text=True, no_wrap=True), Col("tasks"),
                                             Col("min tokens"), Col("proportion"), Col("token budget")))
PLAN_INPUTS = Group("inputs", (Col("input, filters", text=True),))


def input_text(reader: ReaderConfig) -> str:
    """Where a source reads from: for a hub dataset its id, config, split, data_files, where and
    revision, one a line (sources of one dataset differ only there); else the reader's own words."""
    if not isinstance(reader, HubParams) or reader.dataset is None:
        return reader.describe()
    lines = [reader.dataset]
    lines += [f"config {reader.config}"] if reader.config else []
    lines += [f"split {reader.split}"] if reader.split != "train" else []
    lines += [f"data_files {reader.data_files}"] if reader.data_files else []
    lines += [f"where {k} = {v}" for k, v in reader.where.items()]  # spaced: a narrow column wraps at "="
    lines += [f"revision {reader.revision}"] if reader.revision else []
    return "\n".join(lines)


def plan_tables(recipe: Recipe, console: Console) -> list[Table]:
    """What `--dry-run` shows: sources, readers, inputs, filters, buckets, proportions, budgets."""
    rows = GroupedRows((SOURCE, BUCKET), (PLAN_BUCKETS, PLAN_INPUTS), [])
    for s in recipe.sources:
        source_text = input_text(s.reader) + (f"\nfilters {', '.join(f.type_name for f in s.filters)}" if s.filters
                                              else "")
        for i, b in enumerate(s.buckets):
            share = b.proportion if b.proportion is not None else (s.proportion if i == 0 else None)
            first = i == 0
            rows.add([escape(s.name) if first else "", escape(b.name)],
                     [s.reader.type_name if first else "", str(s.tasks) if first else "", f"{b.min_tokens:,}",
                      f"{share:.4f}" if share is not None else "(shared)", bucket_budget_text(recipe, s, i)],
                     [escape(source_text) if first else ""])
    return fitted_tables(rows, console, title=None)


def render_plan(recipe: Recipe, console: Console) -> None:
    if recipe.stage:
        st = recipe.stage
        console.print(f"[bold]stage {st.name}[/] ({st.index + 1} of {st.of}): {st.share:.0%} of the tokens and of "
                      f"the documents (seeded hash in [{st.lo:.2f}, {st.hi:.2f}))")
    total = "all" if recipe.total_tokens is None else f"{recipe.total_tokens:,}"
    console.print(f"recipe [bold]{escape(recipe.name)}[/] ({escape(recipe.path)}): seq_len {recipe.seq_len:,}, "
                  f"tokenizer {escape(recipe.tokenizer)}, seed {recipe.seed}, total_tokens {total}")
    for table in plan_tables(recipe, console):
        console.print(table)
    console.print(f"{len(recipe.sources)} source{'s' if len(recipe.sources) != 1 else ''}, proportions sum to {sum(s.proportion for s in recipe.sources):.4f}")
    if recipe.dedup:
        kinds = [k for k, on in (("exact", recipe.dedup.exact), ("minhash", recipe.dedup.minhash)) if on]
        over = recipe.dedup.sources or [s.name for s in recipe.sources]
        console.print(f"dedup across sources: {', '.join(kinds)} over {', '.join(over)}")
    for line in describe_knobs(recipe):
        console.print(line, highlight=False)
    for name, n in stage_plan(recipe):
        console.print(f"stage {name}: {n:,} task{'s' if n != 1 else ''}", highlight=False, markup=False)
