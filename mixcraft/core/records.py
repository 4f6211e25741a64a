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
            reader = zstandard.ZstdDecompressor().stream_reader(_CheckedRaw(raw), closefd=False)
            with io.BufferedReader(reader) as f:
                yield f
        else:
            yield raw


class _FrameWalk:
    """Walks the zstd frame structure (RFC 8878: frame header, block headers, checksum;
    skippable frames) over the compressed bytes as they stream past, without decompressing, so
    a stream that stops inside a frame is caught. `zstandard`'s stream reader ends such a
    stream silently, losing its tail without a count."""

    _MAGIC, _SKIPPABLE = 0xFD2FB528, 0x184D2A50

    def __init__(self):
        self.buf, self.skip, self.step, self.need = b"", 0, self._magic, 4
        self.checksum = False

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.skip:  # block content, skippable frame payload: not parsed
                n = min(self.skip, len(view))
                self.skip -= n
                view = view[n:]
                continue
            take = min(self.need - len(self.buf), len(view))
            self.buf += bytes(view[:take])
            view = view[take:]
            if len(self.buf) == self.need:
                head, self.buf = self.buf, b""
                self.step(head)

    def between_frames(self) -> bool:
        return self.step == self._magic and not self.buf and not self.skip

    def _magic(self, b: bytes) -> None:
        magic = int.from_bytes(b, "little")
        if magic & 0xFFFFFFF0 == self._SKIPPABLE:
            self.step, self.need = self._skippable, 4
        elif magic == self._MAGIC:
            self.step, self.need = self._descriptor, 1
        else:
            raise zstandard.ZstdError("not a zstd frame")

    def _skippable(self, b: bytes) -> None:
        self.skip = int.from_bytes(b, "little")
        self.step, self.need = self._magic, 4

    def _descriptor(self, b: bytes) -> None:
        fcs, single, self.checksum, did = b[0] >> 6, b[0] >> 5 & 1, bool(b[0] >> 2 & 1), b[0] & 3
        rest = (0 if single else 1) + (0, 1, 2, 4)[did] + ((1 if single else 0), 2, 4, 8)[fcs]
        self.step, self.need = self._block, 3
        self.skip = rest  # window descriptor, dictionary id, content size

    def _block(self, b: bytes) -> None:
        header = int.from_bytes(b, "little")
        last, kind, size = header & 1, header >> 1 & 3, header >> 3
        self.skip = 1 if kind == 1 else size  # an RLE block stores one byte
        if last:
            self.step, self.need = self._magic, 4
            self.skip += 4 if self.checksum else 0


class _CheckedRaw(io.RawIOBase):
    """The compressed bytes, passed through a `_FrameWalk`; at their end, a frame left open
    raises `ZstdError` (counted `corrupt_file` by the readers)."""

    def __init__(self, raw: BinaryIO):
        self.raw, self.walk = raw, _FrameWalk()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        if data:
            self.walk.feed(data)
        elif not self.walk.between_frames():
            raise zstandard.ZstdError("truncated zstd stream: the last frame does not end")
        return data


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
        # Decoded here, strictly: json.loads(bytes) would also take UTF-16/32 and let encoded
        # surrogates through ("surrogatepass"); JSON Lines are UTF-8 (an opening BOM allowed).
        record = json.loads(line.decode("utf-8").removeprefix("\ufeff"))
    except UnicodeDecodeError:
        ledger.skip("invalid_utf8", at)
        return None
    except (ValueError, RecursionError):  # bad JSON; an int of > 4,300 digits; [[[[...]]]] 100k deep
        ledger.skip("malformed_json", at)
        return None
    if not isinstance(record, dict):
        ledger.skip("not_an_object", at)
        return None
    return record


def iter_parquet(path: str | Path, ledger: Ledger, columns: list[str] | None = None,
                 where: Where | None = None, row_groups: tuple[int, int] | None = None
                 ) -> Iterator[tuple[int, dict]]:
    """(row number, record) of the rows `where` selects, holding `columns` (top-level names;
    None: all; absent ones are left out), in row groups [first, stop) of `row_groups` (None:
    all; row numbers count from the file's first row either way). A damaged file is one
    `corrupt_parquet` skip."""
    with open_raw(path) as raw:
        try:
            pf = pq.ParquetFile(raw)
            yield from _parquet_rows(pf, ledger, columns, where or {}, row_groups)
        except (OSError, ValueError, pa.ArrowException) as exc:  # pyarrow raises several types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            ledger.skip("corrupt_parquet", f"{path}: {first}")


def parquet_row_groups(path: str | Path) -> list[int]:
    """The row count of each row group of a Parquet file, from its footer alone ([] when the
    footer cannot be read: the read itself then counts the damage)."""
    try:
        with open_raw(path) as raw:
            meta = pq.ParquetFile(raw).metadata
            return [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    except (OSError, ValueError, pa.ArrowException):
        return []


def _parquet_rows(pf: pq.ParquetFile, ledger: Ledger, columns: list[str] | None,
                  where: Where, row_groups: tuple[int, int] | None) -> Iterator[tuple[int, dict]]:
    names = pf.schema_arrow.names
    cols = None if columns is None else [c for c in dict.fromkeys(columns) if c in names]
    start, stop = row_groups or (0, pf.num_row_groups)
    first = sum(pf.metadata.row_group(g).num_rows for g in range(start))
    for group in range(start, min(stop, pf.num_row_groups)):
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
                 where: Where | None = None, max_line_bytes: int = MAX_LINE_BYTES,
                 row_groups: tuple[int, int] | None = None) -> Iterator[tuple[int, dict]]:
    """The selected records of a JSONL or Parquet file (by its suffix); `row_groups`: Parquet only."""
    if str(path).endswith(PARQUET_SUFFIXES):
        return iter_parquet(path, ledger, columns, where, row_groups)
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
