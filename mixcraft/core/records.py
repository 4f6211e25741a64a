"""Records of JSONL (plain, .gz, .zst) and Parquet files, read with bounded memory.

Bad input is counted in the ledger, never fatal: malformed JSON lines (`malformed_json`),
invalid UTF-8 (`invalid_utf8`), lines longer than `max_line_bytes` (`line_too_long`; the line is
skipped without being held in memory, so a 1 GB one-line file costs one read buffer), records
that are not objects, damaged Parquet files.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import zstandard

from mixcraft.core.ledger import Ledger

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


def iter_jsonl(path: Path, ledger: Ledger, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, dict]]:
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


def iter_parquet(path: Path, ledger: Ledger, columns: list[str] | None = None) -> Iterator[tuple[int, dict]]:
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


def get_field(record: dict[str, Any], dotted: str) -> Any:
    """`meta.redpajama_set_name` looks inside nested mappings."""
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value
