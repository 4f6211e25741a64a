"""What every reader shares: unit listing, task striding, safe file reading."""

from __future__ import annotations

import glob
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from datatrove.data import Document

from mixcraft.ledger import Ledger

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

    def __init__(self, source: str, cfg: dict[str, Any], ledger: Ledger):
        self.source = source
        self.cfg = cfg
        self.ledger = ledger

    @abstractmethod
    def units(self) -> list[Unit]:
        """The input units in a fixed order."""

    @abstractmethod
    def read_unit(self, unit: Unit) -> Iterator[Document]:
        """The documents of one unit; skips are counted in `self.ledger`."""

    def task_units(self, task: int, n_tasks: int) -> list[Unit]:
        return self.units()[task::n_tasks]

    def read(self, task: int, n_tasks: int) -> Iterator[Document]:
        for unit in self.task_units(task, n_tasks):
            yield from self.read_unit(unit)

    def doc(self, text: str, doc_id: str, **metadata: Any) -> Document:
        return Document(text=text, id=doc_id, metadata={"source": self.source, **metadata})


def expand_paths(paths: list[str], suffixes: tuple[str, ...]) -> list[Path]:
    """Files under `paths` (files, folders searched recursively, or globs) ending in `suffixes`.

    Sorted, so every task sees the same order. Symlinks are not followed into folders, which
    keeps a symlink loop from recursing forever.
    """
    found: set[Path] = set()
    for raw in paths:
        matches = [Path(m) for m in sorted(glob.glob(raw))] if any(c in raw for c in "*?[") else [Path(raw)]
        for p in matches:
            if p.is_dir():
                for dirpath, dirnames, filenames in os.walk(p, followlinks=False):
                    dirnames.sort()
                    for name in filenames:
                        f = Path(dirpath) / name
                        if name.endswith(suffixes) and not f.is_symlink():
                            found.add(f)
            elif p.is_file() and (not suffixes or p.name.endswith(suffixes)):
                found.add(p)
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
