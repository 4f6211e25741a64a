"""What every reader shares: the parameters of local files and hub datasets, unit listing,
task striding, safe file reading."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep

from mixcraft.core.ledger import Ledger
from mixcraft.core.mixture import unit_hash
from mixcraft.core.recipe import ReaderConfig
from mixcraft.readers.inputs import Unit, has_surrogates, path_problems
from mixcraft.schema import Invalid, RelPath

__all__ = ["BINARY_SNIFF_BYTES", "FilesOrHub", "HubParams", "PrepareStage", "Reader", "Unit", "decode_text", "first_line",
           "has_surrogates", "looks_binary"]

Scalar = str | int | float | bool


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


@dataclass
class PrepareStage:
    """A pass over a source's whole input that fans out: ranks `0..world_size-1` of `step` (a
    datatrove PipelineStep, so any executor can run them, in any order or at once), then
    `finish()` once, on the driver. Ranks that already finished are no-ops, so a killed pass
    resumes where it stopped."""

    name: str
    step: PipelineStep
    world_size: int
    finish: Callable[[], None]

    def run_here(self) -> None:
        """Every rank in this process, one after another (what `mixcraft build` does today)."""
        for rank in range(self.world_size):
            deque(self.step(None, rank, self.world_size), maxlen=0)
        self.finish()


class Reader(ABC):
    """Base reader over the parameters `cfg`. Subclasses implement `list_units` and `read_unit`."""

    def __init__(self, source: str, cfg: ReaderConfig, ledger: Ledger, work_dir: Path | None = None):
        self.source = source
        self.cfg = cfg
        self.ledger = ledger
        self.work_dir = work_dir  # this source's folder under OUT/.mixcraft/prepare, for passes that need disk
        self._units: list[Unit] | None = None
        self.counts_listing = True
        # With a seed, units are dealt to tasks in a seeded order instead of path order, so a
        # token budget samples units across the whole input (make_reader sets it).
        self.order_seed: int | None = None

    def prepare(self, folder: Path, n_tasks: int) -> PrepareStage | None:
        """Driver-side work before the source's tasks run (resolving a dataset's files, planning
        a pass), and the fan-out stage that must run next, if any (most readers need none)."""
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
        units = self.units()
        if self.order_seed is not None:
            units = sorted(units, key=lambda u: unit_hash(self.order_seed, self.source, u.key))
        return units[task::n_tasks]

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


def first_line(exc: BaseException) -> str:
    """An exception as one line for a ledger example or an error (pyarrow and tarfile write several)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def looks_binary(head: bytes) -> bool:
    """NUL bytes in the first 8 KiB: what git and grep use to call a file binary."""
    return b"\x00" in head[:BINARY_SNIFF_BYTES]


def decode_text(data: bytes) -> str | None:
    """UTF-8 (with an optional BOM), or None when the bytes are not valid UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
