"""`mixcraft verify`: re-check a build output. Every fault is a message; none means sound."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mixcraft.ledger import ledger_faults
from mixcraft.mds import file_hash, iter_rows
from mixcraft.pack import Row, check_row
from mixcraft.stats import load_manifest


def verify_output(out: Path, *, check_rows: bool = True) -> list[str]:
    manifest = load_manifest(out)
    faults: list[str] = []
    for name, led in manifest["ledger"].items():
        faults += ledger_faults(f"ledger[{name}]", led)
    vocab = manifest["tokenizer"]["vocab_size"]
    seq_len = manifest["seq_len"]
    packed_by_source: dict[str, int] = {}
    for stream in manifest["streams"]:
        subset = out / stream["path"]
        doc_tokens = stream["tokens"] - stream.get("padding", 0)  # best-fit padding is no document's
        packed_by_source[stream["source"]] = packed_by_source.get(stream["source"], 0) + doc_tokens
        faults += _check_shards(out, stream["path"], manifest["shards"].get(stream["path"], []))
        if check_rows and not any(f.startswith(stream["path"]) for f in faults):
            faults += _check_subset(subset, stream, vocab, seq_len)
    for name, led in manifest["ledger"].items():
        if led["tokens"]["packed"] != packed_by_source.get(name, 0):
            faults.append(f"ledger[{name}]: packed tokens {led['tokens']['packed']:,} != tokens in its subsets "
                          f"{packed_by_source.get(name, 0):,}")
    return faults


def _check_shards(out: Path, rel: str, shards: list[dict]) -> list[str]:
    faults = []
    for shard in shards:
        path = out / rel / shard["basename"]
        if not path.is_file():
            faults.append(f"{rel}/{shard['basename']}: shard file missing")
        elif path.stat().st_size != shard["bytes"]:
            faults.append(f"{rel}/{shard['basename']}: {path.stat().st_size} bytes, index says {shard['bytes']} "
                          "(truncated or replaced)")
        elif shard["hash"] and file_hash(path) != shard["hash"]:
            faults.append(f"{rel}/{shard['basename']}: sha1 differs from the hash written at build time (corrupted)")
    return faults


def _check_subset(subset: Path, stream: dict, vocab: int, seq_len: int) -> list[str]:
    faults, rows, tokens = [], 0, 0
    try:
        for i, r in enumerate(iter_rows(subset)):
            ids = np.asarray(r["input_ids"])
            where = f"{stream['path']} row {i}"
            row = Row(ids, r["indices"], np.asarray(r["mask"]) if "mask" in r else None)
            faults += [f"{where}: {f}" for f in check_row(row, seq_len)]
            if r["length"] != len(ids):
                faults.append(f"{where}: length column {r['length']} != {len(ids)} tokens")
            if len(ids) and int(ids.max()) >= vocab:
                faults.append(f"{where}: token id {int(ids.max())} >= vocab size {vocab}")
            if r["domain"] != stream["domain"]:
                faults.append(f"{where}: domain {r['domain']!r} != {stream['domain']!r}")
            rows += 1
            tokens += len(ids)
    except Exception as exc:  # streaming raises many types for a damaged shard
        return faults + [f"{stream['path']}: cannot be read ({type(exc).__name__}: {exc})"]
    if rows != stream["rows"] or tokens != stream["tokens"]:
        faults.append(f"{stream['path']}: shards hold {rows:,} rows / {tokens:,} tokens, manifest says "
                      f"{stream['rows']:,} / {stream['tokens']:,}")
    return faults
