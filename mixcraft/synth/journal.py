"""Per-sample checkpoints: an append-only JSONL journal per stage, and a marker for a finished stage.

Every finished task is one line. The runner appends the results that finish together as one
batch and flushes it to the kernel before handling the next, so a killed process (even kill -9)
loses nothing already handled; `fsync` runs at most every `FSYNC_INTERVAL_S` (a power cut loses at
most that much work, which then runs again). One fsync per result cost 3.3 ms here, so at 1,000
results/s it would stall the event loop for 3.3 s per second. A torn last line (the crash hit
mid-write) is cut off on reopen and that task simply runs again. A stage that finished writes
`<journal>.complete.json`; a rerun skips it entirely, so decisions that depend on the whole
stage (the keep rule) are never taken twice.

`lock_run_folder` holds a run's output folder, so that two runs never append to one journal.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from mixcraft.core.outdir import lock_folder
from mixcraft.errors import UserError

FSYNC_INTERVAL_S = 0.2


class Journal:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.records: dict[str, dict[str, Any]] = {}
        self.torn_lines = 0
        self._load()
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._synced_at = time.monotonic()

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        good_end = 0
        lines = data.split(b"\n")
        for lineno, raw in enumerate(lines, start=1):
            is_last = lineno == len(lines)
            if not raw.strip():
                good_end += len(raw) + (0 if is_last else 1)
                continue
            try:
                record = json.loads(raw)
                if is_last:  # valid JSON but no newline yet: the write may not have finished
                    raise ValueError("unterminated")
            except ValueError:
                if lineno >= len(lines) - 1:  # only the final line can be torn by a crash
                    self.torn_lines += 1
                    break
                raise UserError(
                    f"{self.path}:{lineno}: corrupt checkpoint line (not JSON); delete that line "
                    "to regenerate its sample, or delete the file to redo the stage"
                ) from None
            self.records[record["key"]] = record
            good_end += len(raw) + 1
        if good_end < len(data):
            with open(self.path, "r+b") as fh:  # drop the torn tail so appends start on a clean line
                fh.truncate(good_end)

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def append(self, record: dict[str, Any]) -> None:
        self.append_many([record])

    def append_many(self, records: list[dict[str, Any]]) -> None:
        """Write `records` as one batch, flushed to the kernel; fsync'ed if the last was long ago."""
        if not records:
            return
        self._fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        self._fh.flush()
        for r in records:
            self.records[r["key"]] = r
        if time.monotonic() - self._synced_at >= FSYNC_INTERVAL_S:
            self.sync()

    def sync(self) -> None:
        os.fsync(self._fh.fileno())
        self._synced_at = time.monotonic()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            self.sync()
            self._fh.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def marker(self) -> Path:
        return self.path.with_suffix(".complete.json")

    def completed(self) -> dict[str, Any] | None:
        """The summary saved when the stage finished, or None if it has not."""
        return json.loads(self.marker.read_text()) if self.marker.exists() else None

    def mark_complete(self, summary: dict[str, Any]) -> None:
        self.sync()  # the marker must never exist without every line it counts
        write_json_atomic(self.marker, summary)


def lock_run_folder(out: Path) -> IO:
    """Hold `out` for this synth run (the build's flock: it ends with the process, even after kill
    -9); a second run into the same folder is refused in one line instead of doubling journals."""
    return lock_folder(Path(out), what="synth run", work_dir=".synth")


_held: dict[str, list] = {}  # folder -> [lock file, holders in this process]


@contextmanager
def holding_run_folder(out: Path) -> Iterator[None]:
    """`lock_run_folder` for a block, re-entrant within one process: the CLI takes the lock before
    it loads a model, and `run_round` takes it again for callers that skip the CLI."""
    key = str(Path(out).resolve())
    if key in _held:
        _held[key][1] += 1
    else:
        _held[key] = [lock_run_folder(Path(out)), 1]
    try:
        yield
    finally:
        _held[key][1] -= 1
        if not _held[key][1]:
            _held.pop(key)[0].close()


def ensure_same_settings(path: Path, settings: dict[str, Any]) -> None:
    """Record the settings of a run, or refuse to resume one made with different settings.

    A journal holds samples made under one set of settings; resuming with others would mix two
    runs in one output without anyone noticing.
    """
    settings = json.loads(json.dumps(settings))  # compare in the form that is stored
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, settings)
        return
    old = json.loads(path.read_text(encoding="utf-8"))
    changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
    if changed:
        detail = ", ".join(f"{k}: {old.get(k)!r} -> {settings.get(k)!r}" for k in changed[:4])
        raise UserError(
            f"{path.parent}: this run was made with other settings ({detail}); rerun with the same "
            "settings to resume it, or pass a new --out"
        )


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_jsonl_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
