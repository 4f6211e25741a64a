"""The disk side of the repository shuffle (`code_files`): map tasks append rows to K partitions
by repository hash; a reduce task reads one partition back sorted by (repo, path, content) with
bounded memory, spilling sorted runs to disk and merging them.

Layout under the source's prepare folder (OUT/.mixcraft/prepare/<source>/):

    plan.json                            the inputs, partition count and map task count
    part-00003/m00002-c000001.parquet    rows map task 2 wrote for partition 3, its flush 1
    maps/m00002.json                     map task 2 finished (its ledger of row-level skips)
    spill/part-00003/run-000000.arrow    a reduce task's sorted runs (deleted when it finishes)
    ledger.json, done.json               every map task finished (written by the driver)

Memory: a map task holds one buffer of FLUSH_BYTES; a reduce task holds SORT_BYTES of rows
while it sorts a run, then one small batch per run while it merges (at most MERGE_FANIN runs at
once; more are merged in rounds). The order a reduce task yields does not depend on these sizes.
"""

from __future__ import annotations

import heapq
import shutil
import zlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

FLUSH_BYTES = 64 << 20  # rows a map task buffers before a flush to disk
SORT_BYTES = 64 << 20  # rows a reduce task sorts in memory before spilling a run
MERGE_FANIN = 16  # runs merged at once
MERGE_BATCH_ROWS = 64  # rows per run held while merging (The Stack's files average ~10 KB)
CHUNK_ROWS = 1024  # rows per Parquet row group in a map task's chunk
SCHEMA = pa.schema([("repo", pa.string()), ("path", pa.string()), ("content", pa.string()),
                    ("lang", pa.string())])
SORT_KEYS = [("repo", "ascending"), ("path", "ascending"), ("content", "ascending")]


def partition_of(repo: str, n_parts: int) -> int:
    """A stable hash (CRC-32, the same on every machine and Python run) picks the partition."""
    return zlib.crc32(repo.encode("utf-8", "surrogatepass")) % n_parts


def part_dir(folder: Path, part: int) -> Path:
    return folder / f"part-{part:05d}"


def map_marker(folder: Path, rank: int) -> Path:
    return folder / "maps" / f"m{rank:05d}.json"


def clear_map_output(folder: Path, rank: int) -> None:
    """Remove what an earlier, killed run of map task `rank` left, so a re-run starts clean."""
    for stale in folder.glob(f"part-*/m{rank:05d}-c*"):
        stale.unlink()


class PartitionWriter:
    """Buffers one map task's rows per partition and flushes them as numbered Parquet chunks."""

    def __init__(self, folder: Path, n_parts: int, rank: int):
        self.folder, self.n_parts, self.rank = folder, n_parts, rank
        self.buffers: dict[int, list[dict]] = {}
        self.buffered = 0
        self.chunk = 0

    def add(self, row: dict[str, str | None]) -> None:
        part = partition_of(row["repo"], self.n_parts)
        self.buffers.setdefault(part, []).append(row)
        self.buffered += len(row["content"]) + len(row["path"]) + len(row["repo"])
        if self.buffered >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        for part, rows in sorted(self.buffers.items()):
            out = part_dir(self.folder, part)
            out.mkdir(parents=True, exist_ok=True)
            name = f"m{self.rank:05d}-c{self.chunk:06d}.parquet"
            # Small row groups: a reduce task reading this chunk decodes one group at a time.
            pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), out / f"{name}.tmp", row_group_size=CHUNK_ROWS)
            (out / f"{name}.tmp").rename(out / name)  # a killed flush leaves no half chunk under its name
        self.chunk += 1
        self.buffers.clear()
        self.buffered = 0


def sorted_rows(part: Path, spill: Path) -> Iterator[dict]:
    """Every row of partition folder `part`, sorted by (repo, path, content)."""
    shutil.rmtree(spill, ignore_errors=True)
    runs: list[Path] = []
    pending: list[pa.RecordBatch] = []
    pending_bytes = 0
    for batch in _chunk_batches(part):
        pending.append(batch)
        pending_bytes += batch.nbytes
        if pending_bytes >= SORT_BYTES:
            runs.append(_write_run(pending, spill, len(runs)))
            pending, pending_bytes = [], 0
    try:
        if not runs:  # the whole partition fits: sort it in memory, no disk
            table, pending = _sorted(pending), []
            yield from _table_rows(table)
            return
        if pending:
            runs.append(_write_run(pending, spill, len(runs)))
        yield from _merge_all(runs, spill)
    finally:
        shutil.rmtree(spill, ignore_errors=True)


def _chunk_batches(part: Path) -> Iterator[pa.RecordBatch]:
    """The partition's map chunks, one row group at a time: `iter_batches` over a whole file
    holds more of it the more row groups it has (Arrow's peak 34 -> 49 MiB for 3 -> 6 groups of
    4 MB; 25 MiB either way read group by group)."""
    for chunk in sorted(part.glob("*.parquet")):
        pf = pq.ParquetFile(chunk)
        for group in range(pf.num_row_groups):
            yield from pf.iter_batches(batch_size=CHUNK_ROWS, row_groups=[group])


def _sorted(batches: list[pa.RecordBatch]) -> pa.Table:
    return pa.Table.from_batches(batches, schema=SCHEMA).sort_by(SORT_KEYS)


def _table_rows(table: pa.Table) -> Iterator[dict]:
    for batch in table.to_batches(max_chunksize=MERGE_BATCH_ROWS):
        yield from batch.to_pylist()


def _write_run(batches: list[pa.RecordBatch], spill: Path, n: int) -> Path:
    spill.mkdir(parents=True, exist_ok=True)
    path = spill / f"run-{n:06d}.arrow"
    _write_stream(path, iter(_sorted(batches).to_batches(max_chunksize=MERGE_BATCH_ROWS)))
    return path


def _write_stream(path: Path, batches: Iterator[pa.RecordBatch]) -> None:
    """Runs are Arrow IPC streams of MERGE_BATCH_ROWS-row batches: a reader holds one batch.
    (Parquet readers interleaved by a merge each held about their whole file: 6 runs of 64 MiB
    took 400 MiB; IPC streams read batch by batch stay flat.)"""
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.OSFile(str(path), "wb") as f, pa.ipc.new_stream(f, SCHEMA, options=options) as writer:
        for batch in batches:
            writer.write_batch(batch)


def _run_rows(path: Path) -> Iterator[dict]:
    with pa.OSFile(str(path), "rb") as f:
        for batch in pa.ipc.open_stream(f):
            yield from batch.to_pylist()


def _batches_of(rows: Iterator[dict]) -> Iterator[pa.RecordBatch]:
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= MERGE_BATCH_ROWS:
            yield pa.RecordBatch.from_pylist(batch, schema=SCHEMA)
            batch = []
    if batch:
        yield pa.RecordBatch.from_pylist(batch, schema=SCHEMA)


def _key(row: dict) -> tuple[str, str, str]:
    return row["repo"], row["path"], row["content"]


def _merge_all(runs: list[Path], spill: Path) -> Iterator[dict]:
    """k-way merge of sorted runs, in rounds of MERGE_FANIN so memory stays flat however many."""
    n = len(runs)
    while len(runs) > MERGE_FANIN:
        merged = []
        for i in range(0, len(runs), MERGE_FANIN):
            group = runs[i:i + MERGE_FANIN]
            out = spill / f"run-{n:06d}.arrow"
            n += 1
            merged_rows = heapq.merge(*(_run_rows(r) for r in group), key=_key)
            _write_stream(out, _batches_of(merged_rows))
            for r in group:
                r.unlink()
            merged.append(out)
        runs = merged
    yield from heapq.merge(*(_run_rows(r) for r in runs), key=_key)
