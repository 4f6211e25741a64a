"""Short text from JSONL (plain, .gz, .zst) and Parquet files, or an HF dataset streamed with
`datasets` (`dataset:` instead of `paths:`), one document per record.

Bad input is counted, never fatal: malformed JSON lines (`malformed_json`), invalid UTF-8
(`invalid_utf8`), lines longer than `max_line_bytes` (`line_too_long`; the line is skipped
without being held in memory, so a 1 GB one-line file costs one read buffer), records that
are not objects or lack the text field, empty files (note `empty_file`), unreadable or
corrupt files.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar

import zstandard
from datatrove.data import Document

from mixcraft.core.records import (
    JSONL_SUFFIXES,
    MAX_LINE_BYTES,
    PARQUET_SUFFIXES,
    get_field,
    iter_jsonl,
    iter_parquet,
)
from mixcraft.readers.base import FilesOrHub, Reader, Unit, expand_paths
from mixcraft.readers.hf import hf_records
from mixcraft.schema import Positive


@dataclass(frozen=True, kw_only=True)
class RecordParams(FilesOrHub):
    """Records of JSONL/Parquet files or a hub dataset, one document each."""

    suffixes: ClassVar[tuple[str, ...]] = JSONL_SUFFIXES + PARQUET_SUFFIXES
    text_field: str = "text"
    id_field: str = "id"
    max_line_bytes: Annotated[int, Positive] = MAX_LINE_BYTES


@dataclass(frozen=True, kw_only=True)
class TextConfig(RecordParams):
    type_name: ClassVar[str] = "text"


class RecordReader(Reader):
    """Records from local JSONL/Parquet files, or from an HF dataset (`dataset`, streamed and
    split across tasks by `datasets`); subclasses turn one record into a document."""

    cfg: RecordParams

    def list_units(self) -> list[Unit]:
        if self.cfg.dataset is not None:
            return [Unit(key=self.cfg.dataset, path=self.cfg.dataset, size_bytes=0)]
        files = expand_paths(self.cfg.paths, self.cfg.suffixes, self.listing_note)
        return [Unit(key=str(f), path=str(f), size_bytes=f.stat().st_size) for f in files]

    def active_tasks(self, n_tasks: int) -> int:
        # `datasets` splits a streamed dataset over every task; files go one per task at most.
        return n_tasks if self.cfg.dataset is not None else super().active_tasks(n_tasks)

    def read(self, task: int, n_tasks: int) -> Iterator[Document]:
        if self.cfg.dataset is None:
            yield from super().read(task, n_tasks)
            return
        for where, record in hf_records(self.cfg, task, n_tasks, self.ledger):  # applies `where` itself
            yield from self.record_docs(where, record)

    def read_unit(self, unit: Unit) -> Iterator[Document]:
        for where, record in self.records(unit):
            if not self.selected(record):
                self.ledger.note("not_selected")  # another subset of the same files (see `where`)
                continue
            yield from self.record_docs(where, record)

    @abstractmethod
    def record_docs(self, where: str, record: dict) -> Iterator[Document]:
        """The document of one selected record (none if it is unusable, counted)."""

    def records(self, unit: Unit) -> Iterator[tuple[str, dict]]:
        path = Path(unit.path)
        try:
            if path.stat().st_size == 0:
                self.ledger.note("empty_file", str(path))
                return
            if path.name.endswith(PARQUET_SUFFIXES):
                rows = iter_parquet(path, self.ledger)
            else:
                rows = iter_jsonl(path, self.ledger, self.cfg.max_line_bytes)
            for n, record in rows:
                yield f"{path}:{n}", record
        except PermissionError:
            self.ledger.skip("unreadable", str(path))
        except (OSError, EOFError, zstandard.ZstdError) as exc:
            self.ledger.skip("corrupt_file", f"{path}: {exc}")

    def record_text(self, record: dict, where: str) -> str | None:
        field = self.cfg.text_field
        text = get_field(record, field)
        if not isinstance(text, str):
            self.ledger.skip("missing_text_field", f"{where}: no string field {field!r}")
            return None
        if not text.strip():
            self.ledger.skip("empty", where)
            return None
        return text

    def selected(self, record: dict) -> bool:
        """The optional `where: {field: value}` metadata filter (e.g. SlimPajama's book subset)."""
        return all(get_field(record, k) == v for k, v in self.cfg.where.items())

    def record_id(self, record: dict, where: str) -> str:
        return str(record.get(self.cfg.id_field) or where)


class TextReader(RecordReader):

    def record_docs(self, where: str, record: dict) -> Iterator[Document]:
        text = self.record_text(record, where)
        if text is None:
            return
        self.ledger.read()
        yield self.doc(text, self.record_id(record, where), where=where)
