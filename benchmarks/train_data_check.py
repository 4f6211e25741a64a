"""How long the trainer's pre-flight data check takes per GB (mixcraft/train/integrity.py).

    python benchmarks/train_data_check.py --size-gb 2

Writes a build-shaped folder of 64 MB shard files (random bytes; hashing does not care what
they hold) with their sha1 in the manifest, then times, in the same run and on warm page cache:
reading every byte (the floor for any check that reads the data), the full check (sizes +
sha1 on up to 8 threads), and the size-only check (`data.verify: size`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from mixcraft.train.data import read_manifest  # noqa: E402
from mixcraft.train.integrity import check_streams  # noqa: E402

SHARD_BYTES = 64 << 20


def write_build(out: Path, size_bytes: int) -> None:
    subset = out / "books" / "65536"
    subset.mkdir(parents=True)
    shards, index = [], []
    for i in range(max(1, size_bytes // SHARD_BYTES)):
        data = os.urandom(SHARD_BYTES)
        name = f"shard.{i:05d}.mds.zstd"
        (subset / name).write_bytes(data)
        shards.append({"basename": name, "bytes": len(data), "hash": hashlib.sha1(data).hexdigest(), "samples": 1})
        index.append({"zip_data": {"basename": name, "bytes": len(data)}, "raw_data": {"basename": name},
                      "samples": 1})
    (subset / "index.json").write_text(json.dumps({"shards": index, "version": 2}))
    manifest = {"seq_len": 65536, "tokenizer": {"name": "x"}, "shards": {"books/65536": shards},
                "streams": [{"path": "books/65536", "proportion": 1.0, "rows": len(shards)}]}
    (out / "manifest.json").write_text(json.dumps(manifest))


def read_all(folder: Path) -> float:
    t0 = time.perf_counter()
    for path in sorted(folder.rglob("shard.*")):
        with open(path, "rb") as f:
            while f.read(8 << 20):
                pass
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=2.0)
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="train_data_check_") as tmp:
        out = Path(tmp)
        write_build(out, int(opts.size_gb * 1e9))
        streams = list(read_manifest(out, "bench").streams)
        gb = sum(d.n_bytes for s in streams for d in s.shards) / 1e9
        read_all(out)  # warm the page cache, so both timings below read from memory
        read_s = read_all(out)
        full = check_streams(streams, hashes=True, where="bench")
        sizes = check_streams(streams, hashes=False, where="bench")
        assert full.fault is None and sizes.fault is None, (full.fault, sizes.fault)
    print(f"data: {gb:.2f} GB in {len(streams[0].shards)} shard files (warm page cache), {os.cpu_count()} cores")
    print(f"read every byte:        {read_s:6.2f} s = {read_s / gb:.2f} s/GB")
    print(f"check, sizes + sha1:    {full.seconds:6.2f} s = {full.seconds / gb:.2f} s/GB "
          f"({full.seconds / read_s:.2f}x the plain read)")
    print(f"check, sizes only:      {sizes.seconds:6.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
