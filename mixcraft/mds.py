"""Subsets of MDS shards: the build's rows written and read back (core/mdsfile.py holds the
format itself, byte for byte what mosaicml-streaming's `MDSWriter` writes, without importing it).

Layout: each task writes its part of a (source, bucket) subset to
`OUT/<source>/<bucket>/<task:05d>/`; after all tasks finish, `merge_subset` writes the
subset's merged `index.json`, so an unmodified `StreamingDataset(local=OUT/<source>/<bucket>)`
reads every part. Columns follow ProLong's released shards.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mixcraft.core.manifest import ShardDigest
from mixcraft.core.mdsfile import HASH_ALGO, ShardReader, ShardWriter
from mixcraft.core.outdir import write_atomic
from mixcraft.core.pack import Row
from mixcraft.errors import UserError

BASE_COLUMNS = {"input_ids": "ndarray:uint32", "indices": "ndarray:uint32", "domain": "str", "length": "int"}
# Which document each span holds (recipe `output.doc_ids`, on by default): `doc_ids` a JSON list of
# ids, "" for padding; `doc_offsets` (n, 2): where the piece starts in its document, and the
# document's tokens ((0, 0) for padding). Readers that do not ask for them never see them.
DOC_COLUMNS = {"doc_ids": "str", "doc_offsets": "ndarray:uint64"}


def columns_for(with_mask: bool, with_doc_ids: bool = False) -> dict[str, str]:
    return {**BASE_COLUMNS, **({"mask": "ndarray:uint8"} if with_mask else {}),
            **(DOC_COLUMNS if with_doc_ids else {})}


class SubsetWriter:
    """Writes rows of one (source, bucket, task) part as MDS shards, counting as it goes."""

    def __init__(self, out_dir: Path, *, domain: str, with_mask: bool, compression: str, size_limit: int,
                 doc_ids: bool = True):
        if out_dir.exists():  # a part left by a killed run: its task starts again from scratch
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        self.domain = domain
        self.with_mask = with_mask
        self.doc_ids = doc_ids
        self.rows = 0
        self.tokens = 0
        self.pieces = 0
        self._shard_args = {"folder": out_dir, "compressed": compression != "none", "size_limit": size_limit}
        self._writer: ShardWriter | None = None

    def _open(self, with_doc_ids: bool) -> ShardWriter:
        return ShardWriter(columns=columns_for(self.with_mask, with_doc_ids), **self._shard_args)

    def write(self, row: Row, domain: str | None = None) -> None:
        """`domain` overrides the writer's (a pre-mixed subset keeps each row's source). The doc
        columns are written when asked for and the rows carry them (the first row decides)."""
        sample: dict[str, Any] = {"input_ids": row.input_ids, "indices": row.spans, "domain": domain or self.domain,
                                  "length": int(len(row.input_ids))}
        if self.with_mask:
            sample["mask"] = row.mask
        if self._writer is None:
            self._writer = self._open(self.doc_ids and bool(row.doc_ids))
        if "doc_ids" in self._writer.names:
            sample.update(doc_columns(row))
        self._writer.write(sample)
        self.rows += 1
        self.tokens += len(row.input_ids)
        self.pieces += len(row.spans) - (1 if row.padding else 0)  # document pieces; padding is not one

    def finish(self) -> None:
        (self._writer or self._open(False)).finish()

    def counts(self) -> dict[str, int]:
        return {"rows": self.rows, "tokens": self.tokens, "pieces": self.pieces}


def doc_columns(row: Row) -> dict[str, Any]:
    """The DOC_COLUMNS values of a row (one id and one (offset, tokens) pair per span)."""
    n = len(row.spans)
    if len(row.doc_ids) != n or len(row.doc_offsets) != n:
        raise ValueError(f"a row of {n} spans has {len(row.doc_ids)} document ids and {len(row.doc_offsets)} offsets")
    return {"doc_ids": json.dumps(list(row.doc_ids), ensure_ascii=False, separators=(",", ":")),
            "doc_offsets": np.asarray(row.doc_offsets, dtype=np.uint64).reshape(n, 2)}


def row_of(sample: dict[str, Any]) -> Row:
    """A row read back (`SubsetReader.row`) as a `Row`, with its document ids when it has them."""
    ids = np.asarray(sample["input_ids"], dtype=np.uint32)
    spans = np.asarray(sample["indices"], dtype=np.uint32).reshape(-1, 2)
    mask = np.asarray(sample["mask"], dtype=np.uint8) if "mask" in sample else None
    if "doc_ids" not in sample:
        return Row(ids, spans, mask)
    doc_ids = tuple(json.loads(sample["doc_ids"]))
    offsets = tuple((int(a), int(n)) for a, n in np.asarray(sample["doc_offsets"]).reshape(-1, 2))
    padding = int(spans[-1, 1] - spans[-1, 0]) if doc_ids and doc_ids[-1] == "" else 0
    return Row(ids, spans, mask, doc_ids, padding, offsets)


def merge_subset(subset_dir: Path) -> int:
    """Write the merged index.json over the task parts of one subset; returns the part count.

    The same document `streaming.base.util.merge_index` writes (each part's shards, their file
    names prefixed with the part's folder), written here directly: merge_index stages it in a
    temporary folder and logs through the root logger, and refuses to overwrite the index a
    build killed during the merge left (a re-run must rewrite it)."""
    parts = sorted(p for p in subset_dir.iterdir() if p.name.isdigit() and (p / "index.json").is_file())
    if not parts:
        return 0
    shards = []
    for part in parts:
        for shard in json.loads((part / "index.json").read_text())["shards"]:
            for key in ("raw_data", "zip_data", "raw_meta", "zip_meta"):
                if shard.get(key):
                    shard[key]["basename"] = f"{part.name}/{shard[key]['basename']}"
            shards.append(shard)
    write_atomic(subset_dir / "index.json", json.dumps({"version": 2, "shards": shards}))
    return len(parts)


def shard_files(subset_dir: Path) -> list[ShardDigest]:
    """Each shard of a merged subset: relative path, stored bytes and the hash taken at write time."""
    index = json.loads((subset_dir / "index.json").read_text())
    out = []
    for shard in index["shards"]:
        stored = shard["zip_data"] or shard["raw_data"]
        out.append(ShardDigest(basename=stored["basename"], bytes=stored["bytes"],
                               hash=stored.get("hashes", {}).get(HASH_ALGO), samples=shard["samples"]))
    return out


def index_sha256(subset_dir: Path) -> str:
    return hashlib.sha256((subset_dir / "index.json").read_bytes()).hexdigest()


def file_hash(path: Path) -> str:
    h = hashlib.new(HASH_ALGO)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class SubsetReader:
    """Random access to the rows of one subset, reading the build as it is (no
    `StreamingDataset`: that one keeps shared memory alive for the life of the process and
    writes a decompressed copy beside every zstd shard)."""

    def __init__(self, subset_dir: Path):
        self.dir = subset_dir
        index = json.loads((subset_dir / "index.json").read_text())
        self._infos = index["shards"]
        self._starts = np.cumsum([0] + [info["samples"] for info in self._infos])
        self._cached: tuple[int, ShardReader] | None = None

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _shard(self, k: int) -> ShardReader:
        """Shard k, decompressed; one kept."""
        if self._cached is None or self._cached[0] != k:
            self._cached = (k, ShardReader(self.dir, self._infos[k]))
        return self._cached[1]

    def row(self, n: int) -> dict[str, Any]:
        if not 0 <= n < len(self):
            raise UserError(f"{self.dir}: row {n} out of range (the subset has {len(self)} rows)")
        k = int(np.searchsorted(self._starts, n, side="right") - 1)
        row = self._shard(k).sample(n - int(self._starts[k]))
        row["indices"] = np.asarray(row["indices"]).reshape(-1, 2)
        return row


def iter_rows(subset_dir: Path) -> Iterator[dict[str, Any]]:
    """Every row of a subset, in order."""
    reader = SubsetReader(subset_dir)
    for n in range(len(reader)):
        yield reader.row(n)


def read_row(subset_dir: Path, n: int) -> dict[str, Any]:
    return SubsetReader(subset_dir).row(n)
