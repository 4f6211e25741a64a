"""The build plan: which tasks a recipe runs, and how `--limit` and budgets are shared among
them. Each source is split into its recipe's `tasks` (a task reads every `tasks`-th input
unit), so the plan, and the output, never depend on how many workers run it."""

from __future__ import annotations

from dataclasses import dataclass

from mixcraft.core.mixture import bucket_budgets, max_passes, source_budget
from mixcraft.core.recipe import Recipe, Source
from mixcraft.curate.dedup import dedup_stages


@dataclass(frozen=True)
class TaskSpec:
    source: str
    task: int
    n_tasks: int


def plan_tasks(recipe: Recipe) -> list[TaskSpec]:
    return [TaskSpec(s.name, t, s.tasks) for s in recipe.sources for t in range(s.tasks)]


def stage_plan(recipe: Recipe) -> list[tuple[str, int]]:
    """Every stage the build runs and its fan-out, in order (what `--dry-run` prints as
    `stage <name>: <N> tasks`). Only the final index merge and manifest is one task."""
    stages = [(f"{s.name} partition", s.reader.partition_tasks(s.tasks)) for s in recipe.sources
              if hasattr(s.reader, "partition_tasks")]
    stages += dedup_stages(recipe)
    stages.append(("tasks", sum(s.tasks for s in recipe.sources)))
    stages.append(("finalize", 1))
    return stages


def split_limit(limit: int | None, task: int, n_tasks: int) -> int | None:
    """`--limit N` documents per source, shared out over its tasks."""
    if limit is None:
        return None
    return limit // n_tasks + (1 if task < limit % n_tasks else 0)


def doc_cap(limit: int | None, max_docs: int | None) -> int | None:
    """Documents to read per source: the smaller of `--limit` and the recipe's `max_docs`."""
    caps = [c for c in (limit, max_docs) if c is not None]
    return min(caps) if caps else None


def task_doc_cap(source: Source, task: int, limit: int | None) -> int | None:
    """Documents one task may read: the source's cap shared out over its tasks."""
    return split_limit(doc_cap(limit, source.max_docs), task, source.tasks)


def unit_order_seed(recipe: Recipe, source: Source) -> int | None:
    """Under a token budget a source is read in a seeded order of its units (files, repositories,
    data files), so the budget samples the whole input, not the first units in path order."""
    return recipe.seed if source_budget(recipe, source) is not None else None


def bucket_budget_text(recipe: Recipe, source: Source, i: int) -> str:
    """A bucket's token budget for `--dry-run` (max_tokens caps included); buckets without their
    own proportion share one budget."""
    bucket = source.buckets[i]
    if bucket.proportion is None and i > 0:
        return "(shared)"
    budget = bucket_budgets(recipe, source, 1)[bucket.name]
    return "all" if budget is None else f"{budget:,.0f}"


def describe_knobs(recipe: Recipe) -> list[str]:
    """One line per source whose mixture knobs differ from the defaults (for `--dry-run`)."""
    lines = []
    for s in recipe.sources:
        parts = []
        if s.repeat != 1.0:
            parts.append(f"repeat {s.repeat:g} ({'downsampled' if s.repeat < 1 else f'up to {max_passes(s)} passes'})")
        if s.max_tokens is not None:
            parts.append(f"max_tokens {s.max_tokens:,}")
        if s.max_docs is not None:
            parts.append(f"max_docs {s.max_docs:,}")
        lt = s.long_text
        if lt is not None:
            what = "removed" if lt.remove else f"upsampled x{lt.upsample:g}"
            parts.append(f"documents >= {lt.min_tokens:,} tokens {what}")
        if parts:
            lines.append(f"  {s.name}: {', '.join(parts)}")
    if recipe.output.premix:
        lines.append("  output.premix: OUT/premixed/ interleaves every stream in exact proportions")
    return (["mixture knobs:"] + lines) if lines else []
