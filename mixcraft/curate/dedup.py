"""Exact and MinHash near-duplicate removal across sources, as stages of tasks on the executor.

    dedup:
      exact: true                       # identical text (xxhash64 of the whole text)
      minhash: {threshold: 0.8}         # estimated Jaccard similarity of word 5-gram sets
      sources: [code_repos, books]      # optional; default every source
      tasks: 64                         # optional; tasks of the shuffle stages (default: one
                                        # per read task of the deduplicated sources)

Why before the tasks: a duplicate can sit in another source, read by another task. So the
build first runs four stages (curate/dedup_steps.py), each a fan-out of tasks on the chosen
executor, and each task's memory bounded by `budget_bytes` buffers, not by the corpus:

    dedup_signatures   one task per (source, task) of the deduplicated sources
    exact_partitions   `tasks` tasks, one hash partition each           (with `exact`)
    minhash_buckets    num_buckets x ceil(tasks / num_buckets) tasks    (with `minhash`)
    dedup_verdicts     one task per (source, task): its verdicts file

Documents are ordered as the recipe reads them: source, then task, then position in the task's
read stream. A document is dropped as
- `exact_duplicate` when an earlier document has the same text hash; the verdict names the
  first document with that hash;
- otherwise `near_duplicate` when an earlier document shares at least one LSH band with it
  (num_buckets bands of hashes_per_bucket MinHash values, as datatrove) and their whole
  signatures agree on at least `threshold` of their values (an unbiased estimate of the
  Jaccard similarity of their word n-gram sets); the verdict names the earliest such document.
So the first document of every set of copies is kept, whatever the executor or worker count.

How this differs from the single-process index it replaces, which compared each document only
with earlier documents it had *kept*: in a chain A ~ B ~ C where C is not similar to A, the
index kept A and C (B was dropped, so C never met it); here C is a near copy of B and is
dropped too, naming B. That is what makes the stages independent: a document's verdict depends
on its earlier neighbours only, never on whether they were kept, so no task waits for the
verdicts of another. On the demo corpus both keep the same documents (benchmarks/dedup.py
checks). And how it differs from datatrove's own MinhashDedupCluster: that stage joins any
bucket match into one cluster, ignoring `threshold`, and runs as a single task; here the
threshold decides, and every stage fans out.

The tasks then drop exactly the documents with a verdict, by their position in the task's read
stream (`load_verdicts`), and count them in the ledger. Positions are stable because readers
are deterministic and the stages apply the same `--limit` and `max_docs` caps as the tasks.
Dedup runs on documents as read, before the per-source filters: a duplicate is a duplicate
whatever its source's quality filters would say.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep

from mixcraft.core.recipe import Dedup, Recipe, Source
from mixcraft.curate.dedup_files import BUDGET_BYTES


class DocStream(Protocol):
    """One (source, task) of the deduplicated sources, as its build task reads it: calling it
    yields the documents (the build layer makes them; this layer cannot import readers)."""

    source: str

    def __call__(self) -> Iterable[Document]: ...


def dedup_inputs(recipe: Recipe) -> list[tuple[Source, int]]:
    """The read tasks of the signature stage, in recipe order: rank r is the r-th pair."""
    wanted = recipe.dedup.sources or [s.name for s in recipe.sources]
    return [(s, t) for s in recipe.sources if s.name in wanted for t in range(s.tasks)]


def shuffle_tasks(cfg: Dedup, read_tasks: int) -> tuple[int, int]:
    """(exact partitions, workers per MinHash band) for `cfg.tasks`, default the read tasks."""
    tasks = cfg.tasks or read_tasks
    per_band = -(-tasks // cfg.minhash.num_buckets) if cfg.minhash else 0
    return tasks, per_band


def stage_tasks(cfg: Dedup, reads: int) -> list[tuple[str, int]]:
    """The stages for `reads` read tasks and their task counts, in run order."""
    partitions, per_band = shuffle_tasks(cfg, reads)
    stages = [("dedup_signatures", reads)]
    if cfg.exact:
        stages.append(("exact_partitions", partitions))
    if cfg.minhash:
        stages.append(("minhash_buckets", cfg.minhash.num_buckets * per_band))
    return [*stages, ("dedup_verdicts", reads)]


def dedup_stages(recipe: Recipe) -> list[tuple[str, int]]:
    """The dedup stages of a recipe and their task counts, in run order ([] without `dedup:`),
    for `--dry-run`: `stage <name>: <N> tasks`."""
    return stage_tasks(recipe.dedup, len(dedup_inputs(recipe))) if recipe.dedup else []


@dataclass(frozen=True)
class DedupJob:
    """Everything the dedup steps of one build share: what to read, where to write."""

    cfg: Dedup
    streams: tuple[DocStream, ...]  # per rank
    verdicts: tuple[Path, ...]  # per rank: the verdicts file its build task reads
    work: Path  # scratch folder of the stages
    stats: Path  # <stage>/<task>.json: what each task did, its peak memory
    partitions: int
    bucket_workers: int
    hashes: object  # datatrove's HashConfig (xxhash64), for exact and MinHash
    minhash: object | None  # datatrove's MinhashConfig, with `hashes`
    budget_bytes: int = BUDGET_BYTES

    def key_files(self, rank: int) -> tuple[Path, Path]:
        return self.work / "ids" / f"{rank:05d}.txt", self.work / "ids" / f"{rank:05d}.off"

    def full_file(self, rank: int) -> Path:
        return self.work / "full" / f"{rank:05d}.sig"

    def band_file(self, bucket: int, rank: int, run: int) -> Path:
        return self.work / "bands" / f"bucket_{bucket:03d}" / f"{rank:05d}_{run:05d}.minhash.sig"

    def copies_dir(self, stage: str, task: int) -> Path:
        return self.work / "copies" / f"{stage}_{task:05d}"

    def copies_dirs(self, stage: str) -> list[Path]:
        return sorted((self.work / "copies").glob(f"{stage}_*"))



def dedup_job(recipe: Recipe, streams: list[DocStream], verdicts: list[Path], work: Path, stats: Path,
              budget_bytes: int = BUDGET_BYTES) -> DedupJob:
    from mixcraft.curate.minhash import datatrove_config, hash_config

    cfg, hashes = recipe.dedup, hash_config()
    partitions, per_band = shuffle_tasks(cfg, len(streams))
    return DedupJob(cfg=cfg, streams=tuple(streams), verdicts=tuple(verdicts), work=work, stats=stats,
                    partitions=partitions, bucket_workers=per_band, hashes=hashes,
                    minhash=datatrove_config(cfg.minhash, hashes) if cfg.minhash else None, budget_bytes=budget_bytes)


def dedup_pipeline(job: DedupJob) -> list[tuple[str, PipelineStep, int]]:
    """(stage name, its datatrove step, its task count) in run order."""
    from mixcraft.curate import dedup_steps

    steps = {"dedup_signatures": dedup_steps.DedupSignatures, "exact_partitions": dedup_steps.ExactPartitions,
             "minhash_buckets": dedup_steps.MinhashBuckets, "dedup_verdicts": dedup_steps.DedupVerdicts}
    return [(name, steps[name](job), tasks) for name, tasks in stage_tasks(job.cfg, len(job.streams))]


def load_verdicts(path: Path) -> dict[int, tuple[str, str]]:
    """A task's dedup verdicts (position in its read stream -> (reason, key of the original))."""
    if not path.is_file():
        return {}
    return {int(k): tuple(v) for k, v in json.loads(path.read_text()).items()}
