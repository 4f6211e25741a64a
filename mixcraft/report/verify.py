"""`mixcraft verify`: re-check a build output. Every fault is a message; none means sound.

Checked: each shard's size and sha1 against the hashes written at build time (and the
decompressed copy StreamingDataset leaves beside a .zstd shard, since it reads that copy
instead); every row's spans, length column, token ids < vocab size and domain; rows and
tokens per subset against the manifest; the ledger's invariants and its packed tokens against
the subsets; the pre-mixed subset (if any) against its manifest entry; each curriculum stage.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from mixcraft.core.ledger import ledger_faults
from mixcraft.mds import HASH_ALGO, file_hash, iter_rows
from mixcraft.core.pack import Row, check_row
from mixcraft.report.summary import load_manifest


def verify_output(out: Path, *, check_rows: bool = True) -> list[str]:
    from mixcraft.build.curriculum import load_curriculum

    curriculum = load_curriculum(out)
    if curriculum is not None and not (out / "manifest.json").is_file():
        return [f"stage {st['name']}: {f}" for st in curriculum["stages"]
                for f in verify_output(out / st["path"], check_rows=check_rows)]
    manifest = load_manifest(out)
    faults: list[str] = []
    for name, led in manifest["ledger"].items():
        faults += ledger_faults(f"ledger[{name}]", led)
    vocab, seq_len = manifest["tokenizer"]["vocab_size"], manifest["seq_len"]
    packed_by_source: Counter = Counter()
    for stream in manifest["streams"]:
        rel = stream["path"]
        # best-fit padding belongs to no document, so the ledger does not count it as packed
        packed_by_source[stream["source"]] += stream["tokens"] - stream.get("padding", 0)
        shard_faults = check_shards(out, rel, manifest["shards"].get(rel, []))
        faults += shard_faults
        if stream["rows"] == 0:  # StreamingDataset refuses a subset without samples
            held = sum(s["samples"] for s in manifest["shards"].get(rel, []))
            if held or stream["tokens"]:
                faults.append(f"{rel}: manifest says 0 rows but {held} rows / {stream['tokens']} tokens")
        elif check_rows and not shard_faults:
            faults += _check_stream(out / rel, stream, vocab, seq_len)
    for name, led in manifest["ledger"].items():
        if led["tokens"]["packed"] != packed_by_source[name]:
            faults.append(f"ledger[{name}]: packed tokens {led['tokens']['packed']:,} != tokens in its subsets "
                          f"{packed_by_source[name]:,}")
    if "premixed" in manifest:
        faults += _check_premixed(out, manifest, vocab, seq_len, check_rows)
    return faults


def check_shards(out: Path, rel: str, shards: list[dict[str, Any]]) -> list[str]:
    """Sizes and hashes of a subset's shards, as written at build time."""
    faults = []
    for shard in shards:
        path = out / rel / shard["basename"]
        if not path.is_file():
            faults.append(f"{rel}/{shard['basename']}: shard file missing")
        elif path.stat().st_size != shard["bytes"]:
            faults.append(f"{rel}/{shard['basename']}: {path.stat().st_size:,} bytes, the build wrote "
                          f"{shard['bytes']:,} (truncated or replaced)")
        elif shard["hash"] and file_hash(path) != shard["hash"]:
            faults.append(f"{rel}/{shard['basename']}: {HASH_ALGO} differs from the hash written at build time "
                          "(corrupted)")
    return faults + _check_raw_copies(out, rel)


def _check_raw_copies(out: Path, rel: str) -> list[str]:
    """A decompressed copy beside a .zstd shard is what StreamingDataset reads; it must match too."""
    index = out / rel / "index.json"
    if not index.is_file():
        return [f"{rel}/index.json: missing (the subset cannot be read)"]
    faults = []
    for shard in json.loads(index.read_text())["shards"]:
        raw = shard.get("raw_data") or {}
        path = out / rel / raw.get("basename", "")
        if not shard.get("zip_data") or not raw or not path.is_file():
            continue
        want = raw.get("hashes", {}).get(HASH_ALGO)
        if path.stat().st_size != raw["bytes"] or (want and file_hash(path) != want):
            faults.append(f"{rel}/{raw['basename']}: decompressed copy differs from the build's (StreamingDataset "
                          "reads it instead of the .zstd; delete it and it is re-extracted)")
    return faults


def _scan_rows(subset: Path, where: str, vocab: int, seq_len: int, domains: set[str]) -> tuple[list[str], Counter]:
    """Row invariants of a subset; returns faults and counts (rows, tokens, tokens per domain)."""
    faults: list[str] = []
    counts: Counter = Counter()
    try:
        for i, r in enumerate(iter_rows(subset)):
            ids = np.asarray(r["input_ids"])
            at = f"{where} row {i}"
            row = Row(ids, r["indices"], np.asarray(r["mask"]) if "mask" in r else None)
            faults += [f"{at}: {f}" for f in check_row(row, seq_len)]
            if r["length"] != len(ids):
                faults.append(f"{at}: length column {r['length']} != {len(ids)} tokens")
            if len(ids) and int(ids.max()) >= vocab:
                faults.append(f"{at}: token id {int(ids.max())} >= vocab size {vocab}")
            if r["domain"] not in domains:
                faults.append(f"{at}: domain {r['domain']!r} is not {' or '.join(sorted(domains))}")
            counts["rows"] += 1
            counts["tokens"] += len(ids)
            counts[f"domain:{r['domain']}"] += len(ids)
    except Exception as exc:  # streaming raises many types for a damaged shard
        faults.append(f"{where}: cannot be read ({type(exc).__name__}: {exc})")
    return faults, counts


def _check_stream(subset: Path, stream: dict[str, Any], vocab: int, seq_len: int) -> list[str]:
    faults, c = _scan_rows(subset, stream["path"], vocab, seq_len, {stream["domain"]})
    if c["rows"] != stream["rows"] or c["tokens"] != stream["tokens"]:
        faults.append(f"{stream['path']}: shards hold {c['rows']:,} rows / {c['tokens']:,} tokens, manifest says "
                      f"{stream['rows']:,} / {stream['tokens']:,}")
    return faults


def _check_premixed(out: Path, manifest: dict[str, Any], vocab: int, seq_len: int, check_rows: bool) -> list[str]:
    pm = manifest["premixed"]
    rel = pm["path"]
    faults = check_shards(out, rel, manifest["shards"].get(rel, []))
    if faults or not check_rows:
        return faults
    want: Counter = Counter()
    for s in pm["streams"]:  # the buckets of one source share its domain
        want[s["domain"]] += s["tokens"]
    faults, c = _scan_rows(out / rel, rel, vocab, seq_len, set(want) or {"(none)"})
    if c["rows"] != pm["rows"] or c["tokens"] != pm["tokens"]:
        faults.append(f"{rel}: shards hold {c['rows']:,} rows / {c['tokens']:,} tokens, manifest says "
                      f"{pm['rows']:,} / {pm['tokens']:,}")
    for domain, tokens in want.items():
        if c[f"domain:{domain}"] != tokens:
            faults.append(f"{rel}: {c[f'domain:{domain}']:,} tokens from {domain}, manifest says {tokens:,}")
    return faults
