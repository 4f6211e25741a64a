"""What every reader shares: unit listing, task striding, safe file reading."""

from __future__ import annotations

import glob
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from datatrove.data import Document

from mixcraft.core.ledger import Ledger

BINARY_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class Unit:
    """One piece of input a task reads whole: a file, a repository, a dataset shard."""

    key: str
    path: str
    size_bytes: int


class Reader(ABC):
    """Base reader. Subclasses set `params`/`required` and implement `units` and `read_unit`."""

    params: ClassVar[dict[str, Any]] = {}
    required: ClassVar[tuple[str, ...]] = ()

    def __init__(self, source: str, cfg: dict[str, Any], ledger: Ledger, work_dir: Path | None = None):
        self.source = source
        self.cfg = cfg
        self.ledger = ledger
        self.work_dir = work_dir  # this source's folder under OUT/.mixcraft/prepare, for passes that need disk

    def prepare(self, folder: Path, n_tasks: int) -> None:
        """A pass over the whole input before the source's tasks run (most readers need none)."""
        return None

    @abstractmethod
    def list_units(self) -> list[Unit]:
        """The input units in a fixed order; things skipped while listing go to `listing_note`."""

    @abstractmethod
    def read_unit(self, unit: Unit) -> Iterator[Document]:
        """The documents of one unit; skips are counted in `self.ledger`."""

    def units(self) -> list[Unit]:
        if getattr(self, "_units", None) is None:
            self._units = self.list_units()
        return self._units

    def task_units(self, task: int, n_tasks: int) -> list[Unit]:
        # Every task lists all units; only task 0 counts what listing skipped, so a symlink
        # in an input folder is counted once, not once per task.
        self.counts_listing = task == 0
        return self.units()[task::n_tasks]

    def active_tasks(self, n_tasks: int) -> int:
        """How many of the source's `n_tasks` tasks get input (the budget is shared by those)."""
        return max(1, min(n_tasks, len(self.units())))

    def listing_note(self, reason: str, where: str = "") -> None:
        if getattr(self, "counts_listing", True):
            self.ledger.note(reason, where)

    def read(self, task: int, n_tasks: int) -> Iterator[Document]:
        for unit in self.task_units(task, n_tasks):
            yield from self.read_unit(unit)

    def doc(self, text: str, doc_id: str, **metadata: Any) -> Document:
        return Document(text=text, id=doc_id, metadata={"source": self.source, **metadata})


def expand_paths(paths: list[str], suffixes: tuple[str, ...], note: Callable[[str, str], None] | None = None
                 ) -> list[Path]:
    """Files under `paths` (files, folders searched recursively, or globs) ending in `suffixes`.

    Sorted, so every task sees the same order. Inside folders, symlinks are never followed
    (which keeps a symlink loop from recursing forever and a link from reading outside the
    folder) and are counted as `symlink` notes; files of other formats are counted as
    `unsupported_format`. A file named directly in `paths` is read even if it is a link.
    """
    found: set[Path] = set()
    note = note or (lambda reason, where: None)
    for raw in paths:
        matches = [Path(m) for m in sorted(glob.glob(raw))] if any(c in raw for c in "*?[") else [Path(raw)]
        for p in matches:
            if p.is_dir():
                for dirpath, dirnames, filenames in os.walk(p, followlinks=False):
                    dirnames.sort()
                    for name in [*filenames, *(d for d in dirnames if os.path.islink(os.path.join(dirpath, d)))]:
                        f = Path(dirpath) / name
                        if f.is_symlink():
                            note("symlink", str(f))
                        elif not name.endswith(suffixes):
                            note("unsupported_format", str(f))
                        else:
                            found.add(f)
            elif p.is_file() and (not suffixes or p.name.endswith(suffixes)):
                found.add(p)
            elif p.is_file():
                note("unsupported_format", str(p))
    return sorted(found)


def looks_binary(head: bytes) -> bool:
    """NUL bytes in the first 8 KiB: what git and grep use to call a file binary."""
    return b"\x00" in head[:BINARY_SNIFF_BYTES]


def decode_text(data: bytes) -> str | None:
    """UTF-8 (with an optional BOM), or None when the bytes are not valid UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def get_field(record: dict[str, Any], dotted: str) -> Any:
    """`meta.redpajama_set_name` looks inside nested mappings."""
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value
