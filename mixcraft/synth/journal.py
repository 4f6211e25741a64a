"""Per-sample checkpoints: an append-only JSONL journal per stage, and a marker for a finished stage.

Every finished task is one line, written and fsync'ed before the next result is handled, so a
crash loses at most the line being written. A torn last line (the crash hit mid-write) is cut
off on reopen and that task simply runs again. A stage that finished writes
`<journal>.complete.json`; a rerun skips it entirely, so decisions that depend on the whole
stage (the keep rule, the straggler cut) are never taken twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mixcraft.errors import UserError


class Journal:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.records: dict[str, dict[str, Any]] = {}
        self.torn_lines = 0
        self._load()
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

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
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.records[record["key"]] = record

    def close(self) -> None:
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
        write_json_atomic(self.marker, summary)


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
