"""Refuse damaged training data before step 1.

StreamingDataset trusts what it finds: measured on a build, a truncated shard gave 92 of 358
rows without a word, a deleted one a traceback from a background thread, and a flipped byte
in a .zstd shard was trained on. So before the loader opens anything, every shard it will read
is checked against the digests the build wrote into the manifest (bytes and sha1) and every
stream's row count against its `index.json`. The first fault is one line naming the file.

Hashing reads every byte once per node (local rank 0; the other ranks wait for its verdict),
files on up to 8 threads: 0.39 s per GB on 2 cores from page cache (5x a plain read;
benchmarks/train_data_check.py), so ProLong's 512K stage (~84 GB of uint32 tokens) costs about
half a minute per node before step 1, or its disk's read time when colder. `data.verify: size`
skips the hashes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from mixcraft.train.data import ShardDigest, StreamSpec, join_url, open_fs

HASH_THREADS = 8
READ_BLOCK = 8 << 20


@dataclass
class Verdict:
    fault: str | None  # the first fault, one line; None when the data is intact
    n_shards: int
    n_bytes: int
    seconds: float


def check_streams(streams: list[StreamSpec], *, hashes: bool, where: str) -> Verdict:
    """Row counts, index entries, sizes and (with `hashes`) sha1 of every shard of `streams`."""
    t0 = time.perf_counter()
    files: list[tuple[str, ShardDigest]] = []
    for stream in streams:
        fault = _check_index(stream, where)
        if fault:
            return Verdict(fault, 0, 0, time.perf_counter() - t0)
        files += [(join_url(stream.url, d.basename), d) for d in stream.shards]
    fs, _ = open_fs(streams[0].url, where)
    for url, digest in files:
        fault = _check_size(fs, url, digest)
        if fault:
            return Verdict(fault, 0, 0, time.perf_counter() - t0)
    if hashes:
        with ThreadPoolExecutor(min(HASH_THREADS, os.cpu_count() or 1)) as pool:
            for fault in pool.map(lambda item: _check_hash(fs, *item), files):
                if fault:
                    return Verdict(fault, 0, 0, time.perf_counter() - t0)
    return Verdict(None, len(files), sum(d.n_bytes for _, d in files), time.perf_counter() - t0)


def _check_index(stream: StreamSpec, where: str) -> str | None:
    """The manifest's digests and the subset's index.json agree on shards and rows."""
    if not stream.shards:
        return (f"{where}: manifest.json has no shard digests for stream {stream.name}; rebuild with "
                "`mixcraft build` (the trainer checks every shard against them)")
    held = sum(d.samples for d in stream.shards)
    if held != stream.rows:
        return f"{where}: manifest.json: stream {stream.name} says {stream.rows:,} rows but its shards hold {held:,}"
    index_url = join_url(stream.url, "index.json")
    fs, path = open_fs(index_url, where)
    try:
        index = json.loads(fs.cat_file(path))
        listed = [(s.get("zip_data") or s["raw_data"])["basename"] for s in index["shards"]]
        rows = sum(int(s["samples"]) for s in index["shards"])
    except FileNotFoundError:
        return f"{index_url}: missing; the subset cannot be read (rebuild, then `mixcraft verify OUT`)"
    except (ValueError, KeyError, TypeError) as err:
        return f"{index_url}: not an MDS index ({type(err).__name__}: {err}); rebuild the subset"
    if rows != stream.rows:
        return (f"{index_url}: lists {rows:,} rows, the manifest says {stream.rows:,} (a shard was rewritten "
                "or dropped after the build); rebuild, or run `mixcraft verify OUT`")
    if sorted(listed) != sorted(d.basename for d in stream.shards):
        return f"{index_url}: lists shards {listed[:3]}..., not those in the manifest; rebuild the subset"
    return None


def _check_size(fs, url: str, digest: ShardDigest) -> str | None:
    path = fs._strip_protocol(url)
    try:
        size = fs.size(path)
    except FileNotFoundError:
        size = None
    if size is None:
        return f"{url}: shard missing (deleted or never copied); the loader would skip its rows"
    if size != digest.n_bytes:
        return (f"{url}: {size:,} bytes, the build wrote {digest.n_bytes:,} (truncated or replaced); "
                "rebuild or re-copy it")
    return None


def _check_hash(fs, url: str, digest: ShardDigest) -> str | None:
    if digest.sha1 is None:
        return None
    h = hashlib.sha1()
    with fs.open(fs._strip_protocol(url), "rb") as f:
        while block := f.read(READ_BLOCK):
            h.update(block)
    if h.hexdigest() != digest.sha1:
        return f"{url}: sha1 differs from the build's (corrupted); rebuild or re-copy it"
    return None


def verify_data(streams: list[StreamSpec], *, hashes: bool, where: str, local_rank: int) -> Verdict:
    """`check_streams` on local rank 0 of every node; every rank gets the same verdict (the first
    fault found on any node), so all ranks stop with the same line. Collective."""
    import torch.distributed as dist

    mine = check_streams(streams, hashes=hashes, where=where) if local_rank == 0 else None
    verdicts: list[Verdict | None] = [None] * dist.get_world_size()
    dist.all_gather_object(verdicts, mine)
    found = [v for v in verdicts if v is not None]
    faulty = [v for v in found if v.fault]
    return faulty[0] if faulty else found[0]
