"""The build output folder: the one place that names its paths, and the two helpers that keep
it consistent when a build is killed at any point (atomic writes, the folder lock).

    OUT/
      manifest.json  recipe.resolved.yaml  curriculum.json (a curriculum's stages)
      <source>/<bucket>/index.json        merged index of the subset
      <source>/<bucket>/<task:05d>/       one task's MDS part
      <source>/<bucket>/val/              the held-out validation subset (recipe `validation:`)
      premixed/                           output.premix
      .mixcraft/                          the build's own state (never read by trainers)
        build.json lock                   identity of the build; the flock held while it runs
        tasks/<source>/<task>.json        a finished task's result (ledger, counts, lengths)
        progress/<source>.<task>.json     running counts for the progress bars
        prepare/<source>/                 passes before the tasks (repository grouping)
        dedup/<source>/<task>.json        dedup verdicts
        dedup/_work/ dedup/_logs/<stage>/ the dedup stages' scratch files and executor logs
        dropped/<source>/<task>.jsonl     dropped samples (output.write_dropped)
        datatrove/                        executor logs and completion markers
        slurm_jobs.json                   job ids of the last Slurm submission
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mixcraft.errors import UserError

WORK_DIR = ".mixcraft"
MANIFEST = "manifest.json"
CURRICULUM = "curriculum.json"
RESOLVED_RECIPE = "recipe.resolved.yaml"
PREMIX_DIR = "premixed"
VAL_DIR = "val"  # OUT/<source>/<bucket>/val: the held-out validation subset of a stream


@dataclass(frozen=True)
class OutLayout:
    root: Path

    @property
    def work(self) -> Path:
        return self.root / WORK_DIR

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def curriculum(self) -> Path:
        return self.root / CURRICULUM

    @property
    def resolved_recipe(self) -> Path:
        return self.root / RESOLVED_RECIPE

    @property
    def stamp(self) -> Path:
        return self.work / "build.json"

    @property
    def lock(self) -> Path:
        return self.work / "lock"

    @property
    def logs(self) -> Path:
        return self.work / "datatrove"

    @property
    def finalize_logs(self) -> Path:
        return self.work / "datatrove-finalize"

    @property
    def slurm_jobs(self) -> Path:
        return self.work / "slurm_jobs.json"

    @property
    def progress_dir(self) -> Path:
        return self.work / "progress"

    @property
    def dedup_dir(self) -> Path:
        return self.work / "dedup"

    @property
    def dedup_work(self) -> Path:
        return self.dedup_dir / "_work"  # "_": no source name starts with one

    def dedup_logs(self, stage: str) -> Path:
        return self.dedup_dir / "_logs" / stage

    def subset(self, rel: str) -> Path:
        """A subset folder from its manifest path (`source/bucket`, `premixed`)."""
        return self.root / rel

    def task_part(self, source: str, bucket: str, task: int) -> Path:
        return self.root / source / bucket / f"{task:05d}"

    def val_part(self, source: str, bucket: str, task: int) -> Path:
        return self.root / source / bucket / VAL_DIR / f"{task:05d}"

    def task_result(self, source: str, task: int) -> Path:
        return self.work / "tasks" / source / f"{task:05d}.json"

    def progress(self, source: str, task: int) -> Path:
        return self.progress_dir / f"{source}.{task:05d}.json"

    def prepare(self, source: str) -> Path:
        return self.work / "prepare" / source

    def verdicts(self, source: str, task: int) -> Path:
        return self.dedup_dir / source / f"{task:05d}.json"

    def dropped(self, source: str, task: int) -> Path:
        return self.work / "dropped" / source / f"{task:05d}.jsonl"


def write_atomic(path: Path, text: str) -> None:
    """Write-then-rename: a build killed mid-write leaves the old file or the new, never half.
    The temporary name carries the process id, so two processes never share one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def lock_folder(out: Path, *, what: str = "build", work_dir: str = WORK_DIR) -> IO:
    """Hold `out` for this build (or synth run, `what`): a second one into the same folder fails
    at once instead of racing this one. The lock is an flock, so it ends with the process, even
    one killed with SIGKILL, and with its forked workers, which die with it
    (mixcraft/build/executors.py)."""
    path = out / work_dir / "lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise UserError(f"{out}: another {what} is writing this folder right now; wait for it to end, or "
                        "stop it and re-run the same command to resume") from None
    return f
