"""What every reader shares: the parameters of local files and hub datasets, unit listing,
task striding, safe file reading."""

from __future__ import annotations

import glob
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from datatrove.data import Document

from mixcraft.core.ledger import Ledger
from mixcraft.core.recipe import ReaderConfig
from mixcraft.schema import Invalid, RelPath

GLOB_CHARS = "*?["
Scalar = str | int | float | bool


def has_glob(path: str) -> bool:
    return any(c in path for c in GLOB_CHARS)


def path_problems(paths: tuple[str, ...], suffixes: tuple[str, ...], reader: str) -> list[tuple[str, str]]:
    """(key, message) for each path that matches nothing or names a file the reader cannot read."""
    problems = []
    for i, raw in enumerate(paths):
        key = f"paths[{i}]"
        if has_glob(raw):
            anchor = Path(Path(raw).anchor)
            if not any(anchor.glob(str(Path(raw).relative_to(anchor)))):
                problems.append((key, f"glob {raw!r} matches nothing (relative paths are taken against the "
                                      "recipe's folder)"))
        elif not Path(raw).exists():
            problems.append((key, f"path {raw!r} does not exist (relative paths are taken against the recipe's "
                                  "folder)"))
        elif Path(raw).is_file() and suffixes and not raw.endswith(suffixes):
            problems.append((key, f"{Path(raw).name}: unsupported format for a {reader} source (it reads "
                                  f"{', '.join(suffixes)})"))
    return problems


@dataclass(frozen=True, kw_only=True)
class HubParams:
    """A Hugging Face hub (or local builder) dataset, streamed with `datasets`."""

    dataset: str | None = None
    config: str | None = None
    split: str = "train"
    data_files: str | list[str] | dict[str, str | list[str]] | None = None
    revision: str | None = None
    streaming: bool = True
    # Keep only records whose fields equal these values (`meta.redpajama_set_name: RedPajamaBook`).
    where: dict[str, Scalar] = field(default_factory=dict)

    def describe_hub(self) -> str:
        parts = [self.dataset or ""]
        if self.config:
            parts.append(f"config={self.config}")
        if self.data_files:
            parts.append(f"data_files={self.data_files}")
        if self.where:
            parts.append("where " + ", ".join(f"{k}={v}" for k, v in self.where.items()))
        return " ".join(parts)


@dataclass(frozen=True, kw_only=True)
class FilesOrHub(HubParams, ReaderConfig):
    """Exactly one of `paths` (local files, folders or globs) or `dataset` (a hub dataset)."""

    suffixes: ClassVar[tuple[str, ...]] = ()
    paths: tuple[RelPath, ...] = ()

    def __post_init__(self) -> None:
        if bool(self.paths) == (self.dataset is not None):
            raise Invalid("give exactly one of `paths` (local files) or `dataset` (a hub dataset)")

    def input_problems(self) -> list[tuple[str, str]]:
        return path_problems(self.paths, self.suffixes, self.type_name)

    def describe(self) -> str:
        if self.dataset is not None:
            return self.describe_hub()
        return ", ".join(Path(p).name for p in self.paths)

BINARY_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class Unit:
    """One piece of input a task reads whole: a file, a repository, a dataset shard."""

    key: str
    path: str
    size_bytes: int


class Reader(ABC):
    """Base reader over the parameters `cfg`. Subclasses implement `list_units` and `read_unit`."""

    def __init__(self, source: str, cfg: ReaderConfig, ledger: Ledger, work_dir: Path | None = None):
        self.source = source
        self.cfg = cfg
        self.ledger = ledger
        self.work_dir = work_dir  # this source's folder under OUT/.mixcraft/prepare, for passes that need disk
        self._units: list[Unit] | None = None
        self.counts_listing = True

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
        if self._units is None:
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
        if self.counts_listing:
            self.ledger.note(reason, where)

    def read(self, task: int, n_tasks: int) -> Iterator[Document]:
        for unit in self.task_units(task, n_tasks):
            yield from self.read_unit(unit)

    def doc(self, text: str, doc_id: str, **metadata: Any) -> Document:
        return Document(text=text, id=doc_id, metadata={"source": self.source, **metadata})


def expand_paths(paths: tuple[str, ...], suffixes: tuple[str, ...],
                 note: Callable[[str, str], None] | None = None) -> list[Path]:
    """Files under `paths` (files, folders searched recursively, or globs) ending in `suffixes`.

    Sorted, so every task sees the same order. Symlinks found inside folders or matched by a
    glob are never followed (which keeps a symlink loop from recursing forever and a link from
    reading outside the folder) and are counted as `symlink` notes; files of other formats are
    counted as `unsupported_format`. A file named directly in `paths` is read even if it is a link:
    the recipe's author chose it.
    """
    found: set[Path] = set()
    note = note or (lambda reason, where: None)
    for raw in paths:
        matches = [Path(m) for m in sorted(glob.glob(raw))] if has_glob(raw) else [Path(raw)]
        for p in matches:
            if has_glob(raw) and p.is_symlink():
                note("symlink", str(p))
            elif p.is_dir():
                found.update(_walk(p, suffixes, note))
            elif p.is_file() and (not suffixes or p.name.endswith(suffixes)):
                found.add(p)
            elif p.is_file():
                note("unsupported_format", str(p))
    return sorted(found)


def _walk(root: Path, suffixes: tuple[str, ...], note: Callable[[str, str], None]) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in [*filenames, *(d for d in dirnames if os.path.islink(os.path.join(dirpath, d)))]:
            f = Path(dirpath) / name
            if f.is_symlink():
                note("symlink", str(f))
            elif not name.endswith(suffixes):
                note("unsupported_format", str(f))
            else:
                yield f


def looks_binary(head: bytes) -> bool:
    """NUL bytes in the first 8 KiB: what git and grep use to call a file binary."""
    return b"\x00" in head[:BINARY_SNIFF_BYTES]


def decode_text(data: bytes) -> str | None:
    """UTF-8 (with an optional BOM), or None when the bytes are not valid UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
