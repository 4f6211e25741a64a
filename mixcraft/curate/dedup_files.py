"""The files the dedup stages hand each other, written and read in bounded memory.

    OUT/.mixcraft/dedup/_work/
      ids/<rank>.txt, .off        every document's key `source:id`, by position (random access)
      full/<rank>.sig             every document's whole MinHash signature, by position
      bands/bucket_<b>/<rank>_<run>.minhash.sig
                                  one LSH band per record, sorted: datatrove's signature format
      exact/<p>/<rank>_<run>.bin  (xxhash64 of the text, rank, position), sorted, partition p
      copies/<stage>_<task>/<rank>.bin
                                  (position, rank of the copy's original, its position)

A "rank" is one read task of the signature stage: one (source, task) of the recipe, in recipe
order, so (rank, position) orders documents as the recipe does. Every buffer that grows with
the input is flushed at `budget_bytes`: sorted runs (`SortedRuns`), appended copies
(`CopyWriter`). Readers merge sorted runs with a heap, a few records per file at a time.
"""

from __future__ import annotations

import heapq
import json
import os
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path

import numpy as np

# Per buffer kind in a task; a flush sorts a copy, and a signature task has two kinds (exact
# hashes, bands): at most ~128 MB of buffers in any task.
BUDGET_BYTES = 32 << 20
MERGE_RECORDS = 4096  # records read per file at a time by a merge
EXACT = np.dtype([("hash", "<u8"), ("rank", "<u4"), ("pos", "<u4")])
COPY = np.dtype([("pos", "<u4"), ("orig_rank", "<u4"), ("orig_pos", "<u4")])
COPY_RECORD = struct.Struct("<III")
UINT_CODE = {4: "I", 8: "Q"}  # struct's standard sizes (its "L" is 4 bytes, numpy's is 8)


def band_dtype(hashes_per_bucket: int) -> np.dtype:
    """datatrove's signature record: `hashes_per_bucket` uint64, then the document's position."""
    return np.dtype([(f"field{i + 1}", "<u8") for i in range(hashes_per_bucket)]
                    + [(f"field{hashes_per_bucket + 1}", "<u4")])


class SortedRuns:
    """Records of one dtype, by key, written as sorted runs: `path(key, run)` per flush, one
    flush whenever the buffered records of all keys reach `budget_bytes`."""

    def __init__(self, dtype: np.dtype, path: Callable[[Hashable, int], Path], budget_bytes: int):
        self.dtype, self.path, self.budget = dtype, path, budget_bytes
        self.packer = struct.Struct("<" + "".join(UINT_CODE[dtype[i].itemsize] for i in range(len(dtype))))
        self.buffers: dict[Hashable, bytearray] = {}
        self.size, self.runs, self.files = 0, 0, 0

    def add(self, key: Hashable, *values: int) -> None:
        self.buffers.setdefault(key, bytearray()).extend(self.packer.pack(*values))
        self.size += self.packer.size
        if self.size >= self.budget:
            self.flush()

    def flush(self) -> None:
        for key, buf in self.buffers.items():
            records = np.frombuffer(buf, dtype=self.dtype).copy()
            records.sort(order=self.dtype.names)
            path = self.path(key, self.runs)
            path.parent.mkdir(parents=True, exist_ok=True)
            records.tofile(path)
            self.files += 1
        self.buffers, self.size = {}, 0
        self.runs += 1


def read_records(path: Path, dtype: np.dtype) -> Iterator[tuple]:
    """The records of a file, `MERGE_RECORDS` at a time from disk."""
    with open(path, "rb") as f:
        while chunk := f.read(MERGE_RECORDS * dtype.itemsize):
            yield from np.frombuffer(chunk, dtype=dtype).tolist()


def merge_runs(paths: list[Path], dtype: np.dtype) -> Iterator[tuple]:
    """The records of sorted runs, in sorted order (a heap over the files)."""
    return heapq.merge(*(read_records(p, dtype) for p in paths))


class CopyWriter:
    """(position, original's rank, original's position) records, appended to `path(rank)` of
    the copy's rank; buffered up to `budget_bytes`. `start` empties the folder, so a task
    re-run after a kill writes its files from scratch."""

    def __init__(self, folder: Path, budget_bytes: int):
        self.folder, self.budget = folder, budget_bytes
        self.buffers: dict[int, bytearray] = {}
        self.size, self.count = 0, 0

    def start(self) -> CopyWriter:
        remove_tree(self.folder)
        self.folder.mkdir(parents=True)
        return self

    def add(self, rank: int, pos: int, orig_rank: int, orig_pos: int) -> None:
        self.buffers.setdefault(rank, bytearray()).extend(COPY_RECORD.pack(pos, orig_rank, orig_pos))
        self.size += COPY_RECORD.size
        self.count += 1
        if self.size >= self.budget:
            self.flush()

    def flush(self) -> None:
        for rank, buf in self.buffers.items():
            with open(self.folder / f"{rank:05d}.bin", "ab") as f:
                f.write(buf)
        self.buffers, self.size = {}, 0


def read_copies(folders: list[Path], rank: int) -> Iterator[tuple[int, int, int]]:
    """Every (position, original's rank, original's position) written for `rank`."""
    for folder in folders:
        path = folder / f"{rank:05d}.bin"
        if path.is_file():
            yield from read_records(path, COPY)


class RowWriter:
    """Fixed-size rows appended to one file; row i is document i of the rank."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "wb")  # noqa: SIM115 (closed by close())

    def add(self, row: np.ndarray) -> None:
        self.f.write(row.tobytes())

    def close(self) -> None:
        self.f.close()


class RowReader:
    """Random access to the rows of many `RowWriter` files, keeping at most `max_open` open."""

    def __init__(self, path: Callable[[int], Path], dtype: np.dtype, width: int, max_open: int = 64):
        self.path, self.dtype, self.width, self.max_open = path, dtype, width, max_open
        self.row_bytes = dtype.itemsize * width
        self.fds: OrderedDict[int, int] = OrderedDict()

    def row(self, rank: int, pos: int) -> np.ndarray:
        data = os.pread(self._fd(rank), self.row_bytes, pos * self.row_bytes)
        if len(data) != self.row_bytes:
            raise RuntimeError(f"{self.path(rank)}: no row {pos} (a signature task did not finish)")
        return np.frombuffer(data, dtype=self.dtype)

    def _fd(self, rank: int) -> int:
        if rank in self.fds:
            self.fds.move_to_end(rank)
            return self.fds[rank]
        if len(self.fds) >= self.max_open:
            os.close(self.fds.popitem(last=False)[1])
        self.fds[rank] = os.open(self.path(rank), os.O_RDONLY)
        return self.fds[rank]

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


class KeyWriter:
    """Document keys by position: the text file, and the byte offset of each key in a uint64 file."""

    def __init__(self, text: Path, offsets: Path):
        text.parent.mkdir(parents=True, exist_ok=True)
        self.text, self.offsets = open(text, "wb"), open(offsets, "wb")  # noqa: SIM115
        self.at = 0
        self.offsets.write(struct.pack("<Q", 0))

    def add(self, key: str) -> None:
        data = key.encode("utf-8")
        self.text.write(data)
        self.at += len(data)
        self.offsets.write(struct.pack("<Q", self.at))

    def close(self) -> None:
        self.text.close()
        self.offsets.close()


def read_key(text: Path, offsets: Path, pos: int) -> str:
    with open(offsets, "rb") as f:
        start, end = struct.unpack("<QQ", os.pread(f.fileno(), 16, pos * 8))
    with open(text, "rb") as f:
        return os.pread(f.fileno(), end - start, start).decode("utf-8")


def count_keys(offsets: Path) -> int:
    return offsets.stat().st_size // 8 - 1


def remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM), MiB; a forked task's is its own."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def write_stats(path: Path, started: float, **counts: float) -> None:
    """A task's counts, wall seconds and peak RSS, for the benchmark and the curious."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stats = {**counts, "seconds": round(time.perf_counter() - started, 3), "peak_rss_mib": round(peak_rss_mib(), 1)}
    path.write_text(json.dumps(stats))
