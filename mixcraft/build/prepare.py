"""Passes over whole sources that must finish before the per-source tasks start.

- a reader's own pass (`Reader.prepare`): the `code_files` reader hash-partitions its rows by
  repository so that each task can group whole repositories;
- cross-source dedup (`curate/dedup.py`), when the recipe has a `dedup:` block: every
  deduplicated source is read once, in recipe order (source, then task, then document), and
  each later copy of a text gets a verdict naming the kept one; tasks drop them by position.

They run in the build's own process, in this order, and each is skipped on a re-run when its
`done.json` matches (so a killed build resumes). Their results live under OUT/.mixcraft.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from mixcraft.build.plan import split_limit
from mixcraft.core.ledger import Ledger
from mixcraft.core.outdir import OutLayout, write_atomic
from mixcraft.core.recipe import Recipe
from mixcraft.curate.dedup import DedupIndex
from mixcraft.readers import make_reader


def prepare_sources(recipe: Recipe, out: Path, *, limit: int | None, strict: bool) -> None:
    layout = OutLayout(out)
    for source in recipe.sources:
        folder = layout.prepare(source.name)
        reader = make_reader(source.name, source.reader, Ledger(source.name, strict=strict), work_dir=folder)
        reader.prepare(folder, source.tasks)
    if recipe.dedup:
        run_dedup(recipe, layout, limit=limit)


def run_dedup(recipe: Recipe, layout: OutLayout, *, limit: int | None) -> None:
    """The pass before the tasks: verdicts for every later copy, per (source, task)."""
    folder = layout.dedup_dir
    identity = {"recipe_sha256": recipe.digest(), "limit": limit}
    done = folder / "done.json"
    if done.is_file() and json.loads(done.read_text()) == identity:
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    index = DedupIndex(recipe.dedup, folder / "scratch")
    wanted = recipe.dedup.sources or [s.name for s in recipe.sources]
    for source in recipe.sources:
        if source.name not in wanted:
            continue
        for task in range(source.tasks):
            # A scratch ledger: the task itself counts every read and skip for real.
            reader = make_reader(source.name, source.reader, Ledger(source.name),
                                 work_dir=layout.prepare(source.name))
            cap = split_limit(limit, task, source.tasks)
            verdicts = {}
            for ordinal, doc in enumerate(reader.read(task, source.tasks)):
                if cap is not None and ordinal >= cap:
                    break
                verdict = index.check(f"{source.name}:{doc.id}", doc.text)
                if verdict:
                    verdicts[str(ordinal)] = verdict
            write_atomic(layout.verdicts(source.name, task), json.dumps(verdicts))
    write_atomic(done, json.dumps(identity))
