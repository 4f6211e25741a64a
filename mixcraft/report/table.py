"""Rich tables: the mixture and the ledger of a build (`stats`), and a recipe's plan
(`build --dry-run`). Numbers are never cut: a column too narrow folds its cell onto two lines."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mixcraft.build.plan import bucket_budget_text, describe_knobs, stage_plan
from mixcraft.core import fmt
from mixcraft.core.manifest import Manifest
from mixcraft.core.recipe import Recipe
from mixcraft.report.rows import Lengths, Summary

LEFT = {"source", "bucket", "dropped", "reader", "input", "filters"}


def _table(title: str | None, columns: tuple[str, ...]) -> Table:
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="left" if col in LEFT else "right", overflow="fold")
    return table


def _dev(v: float | None) -> str:
    text = fmt.pp(v)
    return f"[red]{text}[/]" if v is not None and abs(v) > 1.0 else text


MIX_COLUMNS = ("source", "bucket", "docs", "rows", "tokens", "target", "actual", "dev pp", "len mean",
               "median", "p90", "split", "padding", "dropped")


def _mix_cells(r: Lengths, name: str, bucket: str, dropped: str) -> list[str]:
    return [escape(name), escape(bucket), f"{r.docs:,}", f"{r.rows:,}", f"{r.tokens:,}", fmt.pct(r.target),
            fmt.pct(r.actual), _dev(r.deviation_pp), fmt.count(r.len_mean), fmt.count(r.len_median),
            fmt.count(r.len_p90), f"{r.split:,}", f"{r.padding:,}", escape(dropped)]


def mixture_table(s: Summary) -> Table:
    """Sources with their buckets beneath them (a source of one bucket is one line)."""
    table = _table(f"{s.recipe.name}: {s.seq_len:,}-token rows, {s.packed_tokens:,} tokens packed (total_tokens "
                   f"{fmt.count(s.total_tokens)}); shares of packed tokens", MIX_COLUMNS)
    for src in s.sources:
        mine = s.streams_of(src.source)
        bucket = mine[0].bucket if len(mine) == 1 else "(all)"
        table.add_row(*_mix_cells(src, src.source, bucket, fmt.reasons(src.dropped)))
        if len(mine) > 1:
            for st in mine:
                table.add_row(*_mix_cells(st, "", f"└ {st.bucket}", ""), style="dim" if st.target is None else "")
    return table


def ledger_table(m: Manifest) -> Table:
    table = _table("ledger (documents and tokens per source)",
                   ("source", "read", "repeated", "kept", "dropped", "split", "tokens kept", "packed", "tail"))
    for name, led in m.ledger.items():
        d, t = led.docs, led.tokens
        table.add_row(escape(name), f"{d.read:,}", f"{m.sources[name].docs_repeated:,}", f"{d.kept:,}",
                      f"{sum(d.dropped.values()):,}", f"{d.split:,}", f"{t.kept:,}", f"{t.packed:,}", f"{t.tail:,}")
    return table


def render_summary(s: Summary, m: Manifest, console: Console) -> None:
    console.print(mixture_table(s))
    console.print(ledger_table(m))
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


PLAN_COLUMNS = ("source", "reader", "input", "filters", "bucket", "min tokens", "proportion", "token budget", "tasks")


def plan_table(recipe: Recipe) -> Table:
    """What `--dry-run` shows: sources, readers, inputs, filters, buckets, proportions, budgets."""
    table = _table(None, PLAN_COLUMNS)
    for s in recipe.sources:
        filters = ", ".join(f.type_name for f in s.filters) or "-"
        for i, b in enumerate(s.buckets):
            share = b.proportion if b.proportion is not None else (s.proportion if i == 0 else None)
            first = i == 0
            table.add_row(escape(s.name) if first else "", s.reader.type_name if first else "",
                          escape(s.reader.describe()) if first else "", filters if first else "", b.name,
                          f"{b.min_tokens:,}", f"{share:.4f}" if share is not None else "(shared)",
                          bucket_budget_text(recipe, s, i), str(s.tasks) if first else "")
    return table


def render_plan(recipe: Recipe, console: Console) -> None:
    if recipe.stage:
        st = recipe.stage
        console.print(f"[bold]stage {st.name}[/] ({st.index + 1} of {st.of}): {st.share:.0%} of the tokens and of "
                      f"the documents (seeded hash in [{st.lo:.2f}, {st.hi:.2f}))")
    total = "all" if recipe.total_tokens is None else f"{recipe.total_tokens:,}"
    console.print(f"recipe [bold]{escape(recipe.name)}[/] ({escape(recipe.path)}): seq_len {recipe.seq_len:,}, "
                  f"tokenizer {escape(recipe.tokenizer)}, seed {recipe.seed}, total_tokens {total}")
    console.print(plan_table(recipe))
    console.print(f"{len(recipe.sources)} sources, proportions sum to {sum(s.proportion for s in recipe.sources):.4f}")
    if recipe.dedup:
        kinds = [k for k, on in (("exact", recipe.dedup.exact), ("minhash", recipe.dedup.minhash)) if on]
        over = recipe.dedup.sources or [s.name for s in recipe.sources]
        console.print(f"dedup across sources: {', '.join(kinds)} over {', '.join(over)}")
    for line in describe_knobs(recipe):
        console.print(line, highlight=False)
    for name, n in stage_plan(recipe):
        console.print(f"stage {name}: {n:,} task{'s' if n != 1 else ''}", highlight=False, markup=False)
