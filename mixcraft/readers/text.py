"""Short text from JSONL (plain, .gz, .zst) and Parquet files, or an HF dataset streamed with
`datasets` (`dataset:` instead of `paths:`), one document per record.

Bad input is counted, never fatal: malformed JSON lines (`malformed_json`), invalid UTF-8
(`invalid_utf8`), lines longer than `max_line_bytes` (`line_too_long`; the line is skipped
without being held in memory, so a 1 GB one-line file costs one read buffer), records that
are not objects or lack the text field, empty files (note `empty_file`), unreadable or
corrupt files.
"""

from __future__ import annotations

import gzip
import io
import json
from abc import abstractmethod
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import zstandard
from datatrove.data import Document

from mixcraft.readers.base import Reader, Unit, expand_paths, get_field
from mixcraft.readers.hf import HF_PARAMS

JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".jsonl.zst", ".json.zst")
PARQUET_SUFFIXES = (".parquet",)
# A single line longer than this is skipped unread rather than held in memory (a 1 GB
# one-line file must not take the build down).
MAX_LINE_BYTES = 64 << 20


def open_binary(path: Path) -> io.BufferedIOBase:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.name.endswith(".zst"):
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb")))
    return open(path, "rb")


def iter_jsonl(path: Path, ledger, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, dict]]:
    """(line number, record) for each JSON object line; bad lines are counted skips."""
    with open_binary(path) as f:
        lineno = 0
        while True:
            line = f.readline(max_line_bytes + 1)
            if not line:
                break
            lineno += 1
            where = f"{path}:{lineno}"
            if len(line) > max_line_bytes and not line.endswith(b"\n"):
                while line and not line.endswith(b"\n"):  # skip the rest of the huge line
                    line = f.readline(max_line_bytes)
                ledger.skip("line_too_long", where)
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except UnicodeDecodeError:
                ledger.skip("invalid_utf8", where)
                continue
            except json.JSONDecodeError:
                ledger.skip("malformed_json", where)
                continue
            if not isinstance(record, dict):
                ledger.skip("not_an_object", where)
                continue
            yield lineno, record


def iter_parquet(path: Path, ledger, columns: list[str] | None = None) -> Iterator[tuple[int, dict]]:
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        ledger.skip("corrupt_parquet", f"{path}: {exc}")
        return
    row = 0
    for batch in pf.iter_batches(batch_size=1024, columns=columns):
        for record in batch.to_pylist():
            row += 1
            yield row, record


class RecordReader(Reader):
    """Records from local JSONL/Parquet files, or from an HF dataset (`dataset`, streamed and
    split across tasks by `datasets`); subclasses turn one record into a document."""

    suffixes = JSONL_SUFFIXES + PARQUET_SUFFIXES

    def list_units(self) -> list[Unit]:
        if "dataset" in self.cfg:
            return [Unit(key=self.cfg["dataset"], path=self.cfg["dataset"], size_bytes=0)]
        files = expand_paths(self.cfg["paths"], self.suffixes, self.listing_note)
        return [Unit(key=str(f), path=str(f), size_bytes=f.stat().st_size) for f in files]

    def active_tasks(self, n_tasks: int) -> int:
        # `datasets` splits a streamed dataset over every task; files go one per task at most.
        return n_tasks if "dataset" in self.cfg else super().active_tasks(n_tasks)

    def read(self, task: int, n_tasks: int) -> Iterator[Document]:
        if "dataset" not in self.cfg:
            yield from super().read(task, n_tasks)
            return
        from mixcraft.readers.hf import hf_records

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
                rows = iter_jsonl(path, self.ledger, self.cfg.get("max_line_bytes", MAX_LINE_BYTES))
            for n, record in rows:
                yield f"{path}:{n}", record
        except PermissionError:
            self.ledger.skip("unreadable", str(path))
        except (OSError, EOFError, zstandard.ZstdError) as exc:
            self.ledger.skip("corrupt_file", f"{path}: {exc}")

    def record_text(self, record: dict, where: str) -> str | None:
        field = self.cfg.get("text_field", "text")
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
        return all(get_field(record, k) == v for k, v in self.cfg.get("where", {}).items())

    def record_id(self, record: dict, where: str) -> str:
        return str(record.get(self.cfg.get("id_field", "id")) or where)


class TextReader(RecordReader):
    params = {"paths": list, "text_field": str, "id_field": str, "where": dict, "max_line_bytes": int,
              **HF_PARAMS}
    required = ()

    def record_docs(self, where: str, record: dict) -> Iterator[Document]:
        text = self.record_text(record, where)
        if text is None:
            return
        self.ledger.read()
        yield self.doc(text, self.record_id(record, where), where=where)
