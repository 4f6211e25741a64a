"""Short text, one document per record of JSONL (plain, .gz, .zst) and Parquet files, or per
plain `.txt` file; from local or fsspec `paths`, or from a hub `dataset` read by data file
(`readers/datafiles.py`).

Bad input is counted, never fatal: malformed JSON lines (`malformed_json`), invalid UTF-8
(`invalid_utf8`), lines (and `.txt` files) longer than `max_line_bytes` (`line_too_long`,
`too_large`; a huge line is skipped without being held in memory), records that are not objects
or lack the text field, empty files (note `empty_file`), unreadable (`unreadable`), vanished
(`missing_file`) or corrupt (`corrupt_file`, `corrupt_parquet`) files, binary `.txt` files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar

import zstandard
from datatrove.data import Document

from mixcraft.core import records as rec
from mixcraft.core.records import JSONL_SUFFIXES, MAX_LINE_BYTES, PARQUET_SUFFIXES, get_field, iter_records
from mixcraft.readers.base import (
    FilesOrHub,
    Reader,
    Unit,
    decode_text,
    first_line,
    has_surrogates,
    looks_binary,
)
from mixcraft.readers.datafiles import (
    FAST_SUFFIXES,
    DatasetFiles,
    dataset_files,
    hf_records,
    save_dataset_files,
    stream_file,
)
from mixcraft.readers.inputs import is_remote, list_files
from mixcraft.schema import Positive

TXT_SUFFIX = ".txt"


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
    suffixes: ClassVar[tuple[str, ...]] = (TXT_SUFFIX,) + JSONL_SUFFIXES + PARQUET_SUFFIXES


class RecordReader(Reader):
    """Records from files (`paths`) or a hub dataset's data files; subclasses turn one record
    into a document. Units are files; task i of n reads files i, i+n, ..."""

    cfg: RecordParams
    _hub: DatasetFiles | None = None

    def hub(self) -> DatasetFiles:
        if self._hub is None:
            self._hub = dataset_files(self.cfg, self.work_dir)
        return self._hub

    def prepare(self, folder: Path, n_tasks: int) -> None:
        """Resolve a hub dataset's data files once, so every task reads the same list."""
        if self.cfg.dataset is not None:
            self._hub = save_dataset_files(self.cfg, folder, n_tasks)
        return None

    def streamed(self) -> bool:
        """A dataset without data files: the counted fallback (see readers/datafiles.py)."""
        return self.cfg.dataset is not None and self.hub().units is None

    def list_units(self) -> list[Unit]:
        if self.cfg.dataset is None:
            return list_files(self.cfg.paths, self.cfg.suffixes, self.listing_note)
        if self.streamed():
            return [Unit(key=self.cfg.dataset, path=self.cfg.dataset, size_bytes=0)]
        return list(self.hub().units or [])

    def active_tasks(self, n_tasks: int) -> int:
        return n_tasks if self.streamed() else super().active_tasks(n_tasks)

    def read(self, task: int, n_tasks: int) -> Iterator[Document]:
        if not self.streamed():
            yield from super().read(task, n_tasks)
            return
        for where, record in hf_records(self.cfg, task, n_tasks, self.ledger):  # applies `where` itself
            yield from self.record_docs(where, record)

    def read_unit(self, unit: Unit) -> Iterator[Document]:
        if self.cfg.dataset is None and unit.path.endswith(TXT_SUFFIX):
            yield from self.read_txt(unit.path)
            return
        for where, record in self.records(unit):
            yield from self.record_docs(where, record)

    def record_docs(self, where: str, record: dict) -> Iterator[Document]:
        """The document of one selected record (none if it is unusable, counted)."""
        text = self.record_text(record, where)
        if text is None:
            return
        self.ledger.read()
        yield self.text_doc(text, self.record_id(record, where), where)

    def text_doc(self, text: str, doc_id: str, where: str) -> Document:
        return self.doc(text, doc_id, where=where)

    def columns(self) -> list[str] | None:
        """The top-level fields a document needs (a Parquet scan reads only these); None: all."""
        return [self.cfg.text_field.split(".")[0], self.cfg.id_field.split(".")[0]]

    def records(self, unit: Unit) -> Iterator[tuple[str, dict]]:
        path = unit.path
        try:
            if not is_remote(path) and os.stat(path).st_size == 0:
                self.ledger.note("empty_file", path)
                return
            if not path.endswith(FAST_SUFFIXES):
                yield from self._streamed_records(path)
                return
            rows = iter_records(path, self.ledger, columns=self.columns(), where=self.cfg.where,
                                max_line_bytes=self.cfg.max_line_bytes, row_groups=unit.row_groups)
            for n, record in rows:
                yield f"{path}:{n}", record
        except PermissionError:
            self.ledger.skip("unreadable", path)
        except FileNotFoundError:
            self.ledger.skip("missing_file", path)
        except (OSError, EOFError, zstandard.ZstdError) as exc:
            self.ledger.skip("corrupt_file", f"{path}: {first_line(exc)}")

    def _streamed_records(self, path: str) -> Iterator[tuple[str, dict]]:
        """A hub data file of another format (csv, arrow, ...), through its `datasets` builder."""
        try:
            for n, record in stream_file(self.hub().builder, path, self.cfg.where):
                yield f"{path}:{n}", record
        except Exception as exc:  # the builders raise many types for a damaged file
            self.ledger.skip("corrupt_file", f"{path}: {first_line(exc)}")

    def read_txt(self, path: str) -> Iterator[Document]:
        """One plain-text file as one document (UTF-8, at most `txt_limit()` bytes)."""
        try:
            with rec.open_raw(path) as f:  # through the module: one place opens every input
                data = f.read(self.txt_limit() + 1)
        except OSError:
            self.ledger.skip("unreadable", path)
            return
        reason = None
        text = None
        if len(data) > self.txt_limit():
            reason = "too_large"
        elif looks_binary(data):
            reason = "binary"
        elif (text := decode_text(data)) is None:
            reason = "invalid_utf8"
        elif not text.strip():
            reason = "empty"
        if reason or text is None:
            self.ledger.skip(reason or "empty", path)
            return
        self.ledger.read()
        yield self.text_doc(text, f"{self.source}/{Path(path).stem}", path)

    def txt_limit(self) -> int:
        return self.cfg.max_line_bytes

    def record_text(self, record: dict, where: str) -> str | None:
        field = self.cfg.text_field
        text = get_field(record, field)
        if not isinstance(text, str):
            self.ledger.skip("missing_text_field", f"{where}: no string field {field!r}")
            return None
        if not text.strip():
            self.ledger.skip("empty", where)
            return None
        if has_surrogates(text):
            self.ledger.skip("invalid_utf8", where)
            return None
        return text

    def record_id(self, record: dict, where: str) -> str:
        return str(record.get(self.cfg.id_field) or where)


class TextReader(RecordReader):
    """`text`: one document per record or `.txt` file."""
