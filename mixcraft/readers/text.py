"""Short text from JSONL (plain, .gz, .zst) and Parquet files, one document per record."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import zstandard

from datatrove.data import Document

from mixcraft.readers.base import Reader, Unit, expand_paths

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


def get_field(record: dict[str, Any], dotted: str) -> Any:
    """`meta.redpajama_set_name` looks inside nested mappings."""
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


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
    """Records from JSONL/Parquet files; subclasses turn a record into a document."""

    suffixes = JSONL_SUFFIXES + PARQUET_SUFFIXES

    def units(self) -> list[Unit]:
        files = expand_paths(self.cfg["paths"], self.suffixes)
        return [Unit(key=str(f), path=str(f), size_bytes=f.stat().st_size) for f in files]

    def records(self, unit: Unit) -> Iterator[tuple[str, dict]]:
        path = Path(unit.path)
        try:
            if path.name.endswith(PARQUET_SUFFIXES):
                rows = iter_parquet(path, self.ledger)
            else:
                rows = iter_jsonl(path, self.ledger)
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


class TextReader(RecordReader):
    params = {"paths": list, "text_field": str, "id_field": str, "where": dict}
    required = ("paths",)

    def read_unit(self, unit: Unit) -> Iterator[Document]:
        for where, record in self.records(unit):
            if not self.selected(record):
                self.ledger.note("not_selected")  # another subset of the same files (see `where`)
                continue
            text = self.record_text(record, where)
            if text is None:
                continue
            self.ledger.read()
            doc_id = record.get(self.cfg.get("id_field", "id")) or where
            yield self.doc(text, str(doc_id), where=where)
