"""Passes over whole sources that must finish before the per-source tasks start.

- a reader's own pass (`Reader.prepare`): the `code_files` reader hash-partitions its rows by
  repository so that each task can group whole repositories;
- cross-source dedup (`curate/dedup.py`), when the recipe has a `dedup:` block.

They run in the build's own process, in this order, and each is skipped on a re-run when its
`done.json` matches (so a killed build resumes). Their results live under OUT/.mixcraft.
"""

from __future__ import annotations

from pathlib import Path

from mixcraft.core.ledger import Ledger


def prepare_dir(work: Path, source: str) -> Path:
    return work / "prepare" / source


def prepare_sources(recipe, work: Path, *, limit: int | None, strict: bool) -> None:
    from mixcraft.curate.dedup import run_dedup
    from mixcraft.readers import make_reader

    for source in recipe.sources:
        folder = prepare_dir(work, source.name)
        reader = make_reader(source.name, source.reader, Ledger(source.name, strict=strict), work_dir=folder)
        reader.prepare(folder, source.tasks)
    if recipe.dedup:
        run_dedup(recipe, work, limit=limit)
