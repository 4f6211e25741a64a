"""Records of JSONL (plain, .gz, .zst) and Parquet files, local or behind an fsspec URL
(`s3://`, `gs://`, `hf://`, `file://`, `memory://`), read with bounded memory.

Bad input is counted in the ledger, never fatal: malformed JSON lines (`malformed_json`),
invalid UTF-8 (`invalid_utf8`), lines longer than `max_line_bytes` (`line_too_long`; the line is
skipped without being held in memory, so a 1 GB one-line file, or a .gz that inflates 1000x into
one line, costs one read buffer), records that are not objects, damaged Parquet files.

A `where` filter ({dotted field: value}) is applied while reading, and what it rejects is counted
as `not_selected`. On Parquet it is pushed down: a row group whose statistics exclude the value is
never read, and otherwise only the `where` columns are decoded first, so the text columns of a
row group without a match are never read or decoded.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import zstandard

from mixcraft.core.ledger import Ledger

JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".jsonl.zst", ".json.zst")
PARQUET_SUFFIXES = (".parquet",)
# A single line longer than this is skipped unread rather than held in memory (a 1 GB
# one-line file must not take the build down).
MAX_LINE_BYTES = 64 << 20
BATCH_ROWS = 1024  # Parquet rows turned into Python dicts at a time
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
Where = Mapping[str, Any]


def is_url(path: str | Path) -> bool:
    """`s3://...`, `hf://...`, `file://...`: opened through fsspec, never as a local path."""
    return isinstance(path, str) and bool(_URL.match(path))


def open_raw(path: str | Path) -> BinaryIO:
    """The stored bytes of a local file or an fsspec URL (the one place inputs are opened)."""
    if not is_url(path):
        return open(path, "rb")
    import fsspec

    return fsspec.open(str(path), "rb").open()


@contextlib.contextmanager
def open_binary(path: str | Path) -> Iterator[BinaryIO]:
    """The file's bytes, decompressed by suffix (.gz, .zst), streamed."""
    name = str(path)
    with open_raw(path) as raw:
        if name.endswith(".gz"):
            with gzip.GzipFile(fileobj=raw) as f:
                yield f
        elif name.endswith(".zst"):
            with io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=False)) as f:
                yield f
        else:
            yield raw


def iter_jsonl(path: str | Path, ledger: Ledger, max_line_bytes: int = MAX_LINE_BYTES,
               where: Where | None = None) -> Iterator[tuple[int, dict]]:
    """(line number, record) for each JSON object line that `where` selects; bad lines are
    counted skips, rejected ones `not_selected` notes."""
    with open_binary(path) as f:
        lineno = 0
        while True:
            line = f.readline(max_line_bytes + 1)
            if not line:
                break
            lineno += 1
            at = f"{path}:{lineno}"
            if len(line) > max_line_bytes and not line.endswith(b"\n"):
                while line and not line.endswith(b"\n"):  # skip the rest of the huge line
                    line = f.readline(max_line_bytes)
                ledger.skip("line_too_long", at)
                continue
            if not line.strip():
                continue
            record = _parse_line(line, at, ledger)
            if record is None:
                continue
            if where and not selected(record, where):
                ledger.note("not_selected")
                continue
            yield lineno, record


def _parse_line(line: bytes, at: str, ledger: Ledger) -> dict | None:
    try:
        record = json.loads(line)
    except UnicodeDecodeError:
        ledger.skip("invalid_utf8", at)
        return None
    except (json.JSONDecodeError, RecursionError):  # RecursionError: [[[[...]]]] nested 100k deep
        ledger.skip("malformed_json", at)
        return None
    if not isinstance(record, dict):
        ledger.skip("not_an_object", at)
        return None
    return record


def iter_parquet(path: str | Path, ledger: Ledger, columns: list[str] | None = None,
                 where: Where | None = None) -> Iterator[tuple[int, dict]]:
    """(row number, record) of the rows `where` selects, holding `columns` (top-level names;
    None: all; absent ones are left out). A damaged file is one `corrupt_parquet` skip."""
    with open_raw(path) as raw:
        try:
            pf = pq.ParquetFile(raw)
            yield from _parquet_rows(pf, ledger, columns, where or {})
        except (OSError, ValueError, pa.ArrowException) as exc:  # pyarrow raises several types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            ledger.skip("corrupt_parquet", f"{path}: {first}")


def _parquet_rows(pf: pq.ParquetFile, ledger: Ledger, columns: list[str] | None,
                  where: Where) -> Iterator[tuple[int, dict]]:
    names = pf.schema_arrow.names
    cols = None if columns is None else [c for c in dict.fromkeys(columns) if c in names]
    first = 0
    for group in range(pf.num_row_groups):
        n_rows = pf.metadata.row_group(group).num_rows
        mask = row_group_mask(pf, group, where) if where else None
        if mask is not None and not pc.any(mask).as_py():
            ledger.note("not_selected", n=n_rows)
            first += n_rows
            continue
        offset = 0
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, row_groups=[group], columns=cols):
            rows = range(offset, offset + batch.num_rows)
            if mask is not None:
                part = mask.slice(offset, batch.num_rows)
                batch = batch.filter(part)
                rows = [r for r, keep in zip(rows, part.to_pylist(), strict=True) if keep]
                if len(part) > len(rows):
                    ledger.note("not_selected", n=len(part) - len(rows))
            for r, record in zip(rows, batch.to_pylist(), strict=True):
                yield first + r + 1, record
            offset += len(part) if mask is not None else batch.num_rows
        first += n_rows


def row_group_mask(pf: pq.ParquetFile, group: int, where: Where) -> pa.BooleanArray:
    """Which rows of a row group `where` selects, from the `where` columns alone (or from the
    statistics alone, when they rule the value out)."""
    n_rows = pf.metadata.row_group(group).num_rows
    paths = {pf.schema.column(j).path: j for j in range(pf.metadata.num_columns)}
    mask = pa.array([True] * n_rows, pa.bool_())
    for field, value in where.items():
        if field not in paths or _stats_exclude(pf, group, paths[field], value):
            return pa.array([False] * n_rows, pa.bool_())
        root, *rest = field.split(".")
        table = pf.read_row_group(group, columns=[field])
        if root not in table.column_names:  # a top-level name with a dot in it: not a nested path
            return pa.array([False] * n_rows, pa.bool_())
        column = table.column(root).combine_chunks()
        for part in rest:
            column = pc.struct_field(column, part)
        mask = pc.and_(mask, _equal(column, value))
    return mask


def _equal(column: pa.Array, value: Any) -> pa.BooleanArray:
    """Python's `==` per row (nulls never match), by Arrow when it has a kernel for the types."""
    try:
        if not isinstance(value, bool) and not pa.types.is_boolean(column.type):
            return pc.fill_null(pc.equal(column, pa.scalar(value)), False)
    except pa.ArrowNotImplementedError:
        pass
    return pa.array([v == value for v in column.to_pylist()], pa.bool_())


def _stats_exclude(pf: pq.ParquetFile, group: int, column: int, value: Any) -> bool:
    """True when the row group's min/max statistics show no row can equal `value`."""
    stats = pf.metadata.row_group(group).column(column).statistics
    if stats is None or not stats.has_min_max or isinstance(value, bool):
        return False
    try:
        return bool(value < stats.min or value > stats.max)
    except TypeError:  # statistics of another type than the value: nothing to conclude
        return False


def iter_records(path: str | Path, ledger: Ledger, *, columns: list[str] | None = None,
                 where: Where | None = None, max_line_bytes: int = MAX_LINE_BYTES
                 ) -> Iterator[tuple[int, dict]]:
    """The selected records of a JSONL or Parquet file (by its suffix)."""
    if str(path).endswith(PARQUET_SUFFIXES):
        return iter_parquet(path, ledger, columns, where)
    return iter_jsonl(path, ledger, max_line_bytes, where)


def selected(record: dict, where: Where) -> bool:
    """The `where: {field: value}` metadata filter (e.g. SlimPajama's book subset)."""
    return all(get_field(record, k) == v for k, v in where.items())


def get_field(record: dict[str, Any], dotted: str) -> Any:
    """`meta.redpajama_set_name` looks inside nested mappings."""
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value
