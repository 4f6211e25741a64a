"""Passes over whole sources that must finish before the per-source tasks start.

- a reader's own pass (`Reader.prepare`, collected by `reader_stages`): a hub dataset's data
  files are resolved once; the `code_files` reader's map stage hash-partitions its rows by
  repository so that each task can group whole repositories (a `PrepareStage`: datatrove
  ranks that an executor can fan out, then a finish on the driver);
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

from mixcraft.build.executors import ExecutorOptions, make_executor
from mixcraft.build.plan import split_limit
from mixcraft.core.ledger import Ledger
from mixcraft.core.outdir import OutLayout, write_atomic
from mixcraft.core.recipe import Recipe
from mixcraft.curate.dedup import DedupIndex
from mixcraft.readers import make_reader
from mixcraft.readers.base import PrepareStage


def prepare_sources(recipe: Recipe, out: Path, *, limit: int | None, strict: bool,
                    executor: ExecutorOptions = ExecutorOptions(), workers: int | None = None) -> None:
    """The passes before the tasks: each reader's fan-out stage on the build's executor (its ranks
    at once, `workers` at a time; finished ranks are skipped on a re-run), then dedup."""
    layout = OutLayout(out)
    for stage in reader_stages(recipe, layout, strict=strict):
        ex = make_executor(executor, [stage.step], tasks=stage.world_size, workers=workers,
                           logging_dir=layout.work / "datatrove-prepare" / stage.name, name=f"{recipe.name}-{stage.name}")
        ex.run()
        stage.finish()
    if recipe.dedup:
        run_dedup(recipe, layout, limit=limit)


def reader_stages(recipe: Recipe, layout: OutLayout, *, strict: bool) -> list[PrepareStage]:
    """Each reader's driver-side preparation (a hub dataset's data files resolved once), and the
    fan-out passes that must run before the tasks (`code_files`' map stage: `stage.world_size`
    ranks of `stage.step`, then `stage.finish()`); a pass that already finished is left out."""
    stages = []
    for source in recipe.sources:
        folder = layout.prepare(source.name)
        reader = make_reader(source.name, source.reader, Ledger(source.name, strict=strict), work_dir=folder)
        stage = reader.prepare(folder, source.tasks)
        if stage is not None:
            stages.append(stage)
    return stages


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
