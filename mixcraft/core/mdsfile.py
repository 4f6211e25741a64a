"""The MDS shard format of mosaicml-streaming, written and read without importing streaming.

`import streaming` pulls in torch and transformers: about 4 s and 0.8 GiB per process before any
work (measured on main, 84 % of a build worker's peak RSS). A build worker only needs the
format, which is small and fixed (streaming 0.13, `MDSWriter`/`MDSReader`, index version 2):

    shard file:  uint32 n | uint32 offsets[n + 1] | config JSON | sample 0 | ... | sample n-1
    sample:      uint32 size of each variable-size column (sorted by name) | each column's bytes
    str:         UTF-8                      int:  int64
    ndarray:D:   (ndim << 2 | shape-dtype code) byte, shape as that dtype, then the values

A shard is closed before a sample would take it past `size_limit` (counting 4 bytes per
sample and the header), compressed with zstd level 3 by the same `zstd` library streaming
uses, and hashed with sha1; `index.json` lists the shards as streaming does. A test checks
the bytes against `MDSWriter` on the same rows, and `StreamingDataset` reads what this writes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import zstd

ZSTD_LEVEL = 3
HASH_ALGO = "sha1"
_VALUE_DTYPES = {"uint8": 8, "int8": 9, "uint16": 16, "int16": 17, "float16": 18, "uint32": 32, "int32": 33,
                 "float32": 34, "uint64": 64, "int64": 65, "float64": 66}
_DTYPE_OF_CODE = {v: k for k, v in _VALUE_DTYPES.items()}
_SHAPE_DTYPES = ("uint8", "uint16", "uint32", "uint64")
_FIXED_SIZES = {"int": 8}


def _shape_dtype(shape: tuple[int, ...]) -> int:
    biggest = max(shape)
    return next(i for i, bits in enumerate((8, 16, 32, 64)) if biggest < (1 << bits))


def encode_value(encoding: str, value: Any) -> bytes:
    if encoding == "str":
        return value.encode("utf-8")
    if encoding == "int":
        return np.int64(value).tobytes()
    if encoding.startswith("ndarray:"):
        arr = np.asarray(value)
        if arr.dtype != np.dtype(encoding.split(":")[1]):
            raise ValueError(f"wrong dtype for {encoding}: {arr.dtype}")
        if arr.size == 0 or min(arr.shape) <= 0:
            raise ValueError("MDS cannot encode an empty array")
        code = _shape_dtype(arr.shape)
        header = bytes([(arr.ndim << 2) | code]) + np.asarray(arr.shape, _SHAPE_DTYPES[code]).tobytes()
        return header + arr.tobytes()
    raise ValueError(f"unsupported MDS encoding {encoding!r} (mixcraft writes str, int and ndarray:<dtype>)")


def decode_value(encoding: str, data: bytes) -> Any:
    if encoding == "str":
        return data.decode("utf-8")
    if encoding == "int":
        return int(np.frombuffer(data, np.int64)[0])
    dtype = encoding.split(":")[1]
    head = data[0]
    ndim, shape_dtype = head >> 2, _SHAPE_DTYPES[head & 3]
    width = np.dtype(shape_dtype).itemsize
    shape = tuple(int(x) for x in np.frombuffer(data, shape_dtype, count=ndim, offset=1))
    return np.frombuffer(data, dtype, offset=1 + ndim * width).reshape(shape)


class ShardWriter:
    """Writes samples into MDS shards in `folder` and, at `finish`, its index.json."""

    def __init__(self, folder: Path, *, columns: dict[str, str], compressed: bool, size_limit: int):
        self.folder = folder
        self.names = sorted(columns)
        self.encodings = [columns[n] for n in self.names]
        self.sizes = [_FIXED_SIZES.get(e) for e in self.encodings]
        self.compression = f"zstd:{ZSTD_LEVEL}" if compressed else None
        self.size_limit = size_limit
        self.config = {"version": 2, "format": "mds", "compression": self.compression, "hashes": [HASH_ALGO],
                       "size_limit": size_limit, "column_names": self.names, "column_encodings": self.encodings,
                       "column_sizes": self.sizes}
        self.config_bytes = json.dumps(self.config, sort_keys=True).encode("utf-8")
        self.shards: list[dict[str, Any]] = []
        self.samples: list[bytes] = []
        self.cached = 8 + len(self.config_bytes)

    def write(self, sample: dict[str, Any]) -> None:
        head, body = [], []
        for name, encoding, size in zip(self.names, self.encodings, self.sizes, strict=True):
            datum = encode_value(encoding, sample[name])
            if size is None:
                head.append(len(datum))
            body.append(datum)
        data = np.asarray(head, np.uint32).tobytes() + b"".join(body)
        if self.size_limit and self.size_limit < self.cached + len(data) + 4:
            self._flush()  # as MDSWriter: even when empty, so a sample over the limit gets its own shard
        self.samples.append(data)
        self.cached += len(data) + 4

    def finish(self) -> None:
        if self.samples:
            self._flush()
        text = json.dumps({"version": 2, "shards": self.shards}, sort_keys=True)
        (self.folder / "index.json").write_text(text, encoding="utf-8")

    def _flush(self) -> None:
        n = len(self.samples)
        offsets = np.cumsum([0] + [len(s) for s in self.samples]).astype(np.uint32)
        offsets += 4 + len(offsets.tobytes()) + len(self.config_bytes)
        raw = np.uint32(n).tobytes() + offsets.tobytes() + self.config_bytes + b"".join(self.samples)
        raw_name = f"shard.{len(self.shards):05}.mds"
        raw_info = _file_info(raw_name, raw)
        zip_info = None
        data, name = raw, raw_name
        if self.compression:
            data, name = zstd.compress(raw, ZSTD_LEVEL), raw_name + ".zstd"
            zip_info = _file_info(name, data)
        (self.folder / name).write_bytes(data)
        self.shards.append({"samples": n, "raw_data": raw_info, "zip_data": zip_info, **self.config})
        self.samples, self.cached = [], 8 + len(self.config_bytes)


def _file_info(basename: str, data: bytes) -> dict[str, Any]:
    return {"basename": basename, "bytes": len(data), "hashes": {HASH_ALGO: hashlib.sha1(data).hexdigest()}}


class ShardReader:
    """The samples of one shard (decompressed in memory when stored as zstd)."""

    def __init__(self, folder: Path, info: dict[str, Any]):
        stored = info["zip_data"] or info["raw_data"]
        data = (folder / stored["basename"]).read_bytes()
        self.raw = zstd.decompress(data) if info["zip_data"] else data
        self.names, self.encodings, self.sizes = info["column_names"], info["column_encodings"], info["column_sizes"]
        self.n = int(np.frombuffer(self.raw, np.uint32, count=1)[0])
        self.offsets = np.frombuffer(self.raw, np.uint32, count=self.n + 1, offset=4)

    def sample(self, i: int) -> dict[str, Any]:
        data = self.raw[int(self.offsets[i]):int(self.offsets[i + 1])]
        n_var = sum(s is None for s in self.sizes)
        var = iter(np.frombuffer(data, np.uint32, count=n_var).tolist())
        pos, out = 4 * n_var, {}
        for name, encoding, size in zip(self.names, self.encodings, self.sizes, strict=True):
            length = size if size is not None else next(var)
            out[name] = decode_value(encoding, data[pos:pos + length])
            pos += length
        return out
