"""`mixcraft verify`: re-check a build output. Every fault is a message; none means sound.

Checked: the manifest's own content digest (an edit after the build is a fault); each
subset's index.json against the sha256 recorded at build time; each shard's size and sha1
against the hashes written at build time (and the decompressed copy StreamingDataset leaves
beside a .zstd shard, since it reads that copy instead); every row's spans, length column,
token ids < vocab size and domain, and its document ids when it has them (one per span, ""
exactly for the padding span, each piece within its document); rows and tokens per subset against the manifest; the
ledger's invariants and its packed tokens against the subsets; the pre-mixed subset (if any)
against its manifest entry; each curriculum stage.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import numpy as np

from mixcraft.core.ledger import ledger_faults
from mixcraft.core.manifest import Manifest, ShardDigest, Stream, content_faults, read_manifest
from mixcraft.core.pack import Row, check_row
from mixcraft.mds import HASH_ALGO, file_hash, index_sha256, iter_rows, row_of
from mixcraft.report.stats import build_outputs


def verify_output(out: Path, *, check_rows: bool = True) -> list[str]:
    builds = build_outputs(out)
    if builds[0][0] is not None:
        return [f"stage {name}: {f}" for name, path in builds for f in verify_output(path, check_rows=check_rows)]
    faults = content_faults(out)
    manifest = read_manifest(out, check_digest=False)
    for name, led in manifest.ledger.items():
        faults += ledger_faults(f"ledger[{name}]", dataclasses.asdict(led))
    packed_by_source: Counter = Counter()
    for stream in manifest.streams:
        # best-fit padding belongs to no document, so the ledger does not count it as packed
        packed_by_source[stream.source] += stream.tokens - stream.padding
        faults += _check_subset(out, manifest, stream, check_rows)
    for name, led in manifest.ledger.items():
        if led.tokens.packed != packed_by_source[name]:
            faults.append(f"ledger[{name}]: packed tokens {led.tokens.packed:,} != tokens in its subsets "
                          f"{packed_by_source[name]:,}")
    if manifest.premixed is not None:
        faults += _check_premixed(out, manifest, check_rows)
    return faults


def _check_subset(out: Path, m: Manifest, stream: Stream, check_rows: bool) -> list[str]:
    rel = stream.path
    faults = check_index(out, m, rel) + check_shards(out, rel, m.shards.get(rel, []))
    if stream.rows == 0:  # StreamingDataset refuses a subset without samples
        held = sum(s.samples for s in m.shards.get(rel, []))
        if held or stream.tokens:
            faults.append(f"{rel}: manifest says 0 rows but {held} rows / {stream.tokens} tokens")
    elif check_rows and not faults:
        faults += _check_stream(out / rel, stream, m.tokenizer.vocab_size, m.seq_len)
    if stream.validation is not None:
        faults += _check_validation(out, m, stream, check_rows)
    return faults


def _check_validation(out: Path, m: Manifest, stream: Stream, check_rows: bool) -> list[str]:
    """The held-out subset: as written, and holding the rows and tokens the manifest says."""
    val = stream.validation
    faults = check_index(out, m, val.path) + check_shards(out, val.path, m.shards.get(val.path, []))
    if faults or not check_rows or not val.rows:
        return faults
    faults, c = _scan_rows(out / val.path, val.path, m.tokenizer.vocab_size, m.seq_len, {stream.domain})
    if c["rows"] != val.rows or c["tokens"] != val.tokens:
        faults.append(f"{val.path}: shards hold {c['rows']:,} rows / {c['tokens']:,} tokens, manifest says "
                      f"{val.rows:,} / {val.tokens:,}")
    return faults


def check_index(out: Path, m: Manifest, rel: str) -> list[str]:
    """The subset's index.json is the one the build wrote (the trainer reads shards through it)."""
    if not (out / rel / "index.json").is_file():
        return [f"{rel}/index.json: missing (the subset cannot be read)"]
    want = m.indexes.get(rel)
    if want is None:
        return [f"{rel}/index.json: the manifest records no digest for it"]
    if index_sha256(out / rel) != want:
        return [f"{rel}/index.json: sha256 differs from the one recorded at build time (edited or replaced)"]
    return []


def check_shards(out: Path, rel: str, shards: list[ShardDigest]) -> list[str]:
    """Sizes and hashes of a subset's shards, as written at build time."""
    faults = []
    for shard in shards:
        path = out / rel / shard.basename
        if not path.is_file():
            faults.append(f"{rel}/{shard.basename}: shard file missing")
        elif path.stat().st_size != shard.bytes:
            faults.append(f"{rel}/{shard.basename}: {path.stat().st_size:,} bytes, the build wrote "
                          f"{shard.bytes:,} (truncated or replaced)")
        elif shard.hash and file_hash(path) != shard.hash:
            faults.append(f"{rel}/{shard.basename}: {HASH_ALGO} differs from the hash written at build time "
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
            row = row_of(r)
            faults += [f"{at}: {f}" for f in check_row(row, seq_len) + doc_id_faults(row)]
            if r["length"] != len(ids):
                faults.append(f"{at}: length column {r['length']} != {len(ids)} tokens")
            if len(ids) and int(ids.max()) >= vocab:
                faults.append(f"{at}: token id {int(ids.max())} >= vocab size {vocab}")
            if r["domain"] not in domains:
                faults.append(f"{at}: domain {r['domain']!r} is not {' or '.join(sorted(domains))}")
            counts["rows"] += 1
            counts["tokens"] += len(ids)
            counts[f"domain:{r['domain']}"] += len(ids)
    except Exception as exc:  # a damaged shard fails in zstd, numpy or UTF-8 decoding
        faults.append(f"{where}: cannot be read ({type(exc).__name__}: {exc})")
    return faults, counts


def doc_id_faults(row: Row) -> list[str]:
    """The doc_ids/doc_offsets columns against the spans (nothing to check without them)."""
    if not row.doc_ids:
        return []
    n = len(row.spans)
    if len(row.doc_ids) != n or len(row.doc_offsets) != n:
        return [f"{len(row.doc_ids)} document ids and {len(row.doc_offsets)} offsets for {n} spans"]
    faults = []
    for k, ((a, b), doc_id, (start, n_tokens)) in enumerate(zip(row.spans.tolist(), row.doc_ids, row.doc_offsets,
                                                                 strict=True)):
        if doc_id == "" and (k != n - 1 or (start, n_tokens) != (0, 0)):
            faults.append(f"span {k}: an empty document id is for the final padding span only")
        elif doc_id and start + (b - a) > n_tokens:
            faults.append(f"span {k}: document tokens [{start}, {start + b - a}) past its {n_tokens} tokens")
    return faults


def _check_stream(subset: Path, stream: Stream, vocab: int, seq_len: int) -> list[str]:
    faults, c = _scan_rows(subset, stream.path, vocab, seq_len, {stream.domain})
    if c["rows"] != stream.rows or c["tokens"] != stream.tokens:
        faults.append(f"{stream.path}: shards hold {c['rows']:,} rows / {c['tokens']:,} tokens, manifest says "
                      f"{stream.rows:,} / {stream.tokens:,}")
    return faults


def _check_premixed(out: Path, m: Manifest, check_rows: bool) -> list[str]:
    pm = m.premixed
    rel = pm.path
    faults = check_index(out, m, rel) + check_shards(out, rel, m.shards.get(rel, []))
    if faults or not check_rows:
        return faults
    want: Counter = Counter()
    for s in pm.streams:  # the buckets of one source share its domain
        want[s.domain] += s.tokens
    faults, c = _scan_rows(out / rel, rel, m.tokenizer.vocab_size, m.seq_len, set(want) or {"(none)"})
    if c["rows"] != pm.rows or c["tokens"] != pm.tokens:
        faults.append(f"{rel}: shards hold {c['rows']:,} rows / {c['tokens']:,} tokens, manifest says "
                      f"{pm.rows:,} / {pm.tokens:,}")
    for domain, tokens in want.items():
        if c[f"domain:{domain}"] != tokens:
            faults.append(f"{rel}: {c[f'domain:{domain}']:,} tokens from {domain}, manifest says {tokens:,}")
    return faults
