"""A pre-mixed stream (`output.premix: true`): every subset's rows interleaved into one MDS
subset, OUT/premixed/, in exact proportions, for trainers that read one dataset in order
instead of mixing streams at load time.

- **How many rows.** The largest total N such that every stream can give its share
  N x proportion without repeating a row; the scarcest stream gives all its rows.
  Counts are rounded by largest remainder, so they sum to N and each is within one row of
  N x proportion. With rows of equal length (every packing mode that fills rows), row shares
  are token shares.
- **Which rows.** A seeded permutation of each stream's rows; the first `count` are used.
- **In what order.** Row j of a stream with n rows sits at position (j + 1/2) / n of the
  stream; rows are merged by position (ties to the earlier stream). So every prefix of the
  pre-mixed stream, not just the whole, holds each stream's share to within about a row.

Each row keeps its source's name in `domain`. If any stream has a loss mask, every row gets
one (all ones for plain text, which trains on every token either way).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from mixcraft.core.manifest import Manifest, Premix, PremixStream
from mixcraft.core.mixture import unit_hash
from mixcraft.core.outdir import PREMIX_DIR, OutLayout
from mixcraft.core.recipe import Recipe
from mixcraft.mds import SubsetReader, SubsetWriter, index_sha256, row_of, shard_files


def premix_counts(rows: list[int], proportions: list[float]) -> list[int]:
    """Rows to take from each stream: exact proportions, no stream asked for more than it has."""
    total = sum(proportions)
    if not rows or total <= 0:
        return [0] * len(rows)
    props = [p / total for p in proportions]
    n_total = min(math.floor(r / p + 1e-9) for r, p in zip(rows, props, strict=True) if p > 0)
    counts = [min(r, math.floor(n_total * p)) for r, p in zip(rows, props, strict=True)]
    # Largest remainder first, so the counts sum to n_total (where streams have rows to give).
    by_remainder = sorted(range(len(rows)), key=lambda i: (-(n_total * props[i] - counts[i]), i))
    short = n_total - sum(counts)
    for i in by_remainder:
        if short <= 0:
            break
        if counts[i] < rows[i] and props[i] > 0:
            counts[i] += 1
            short -= 1
    return counts


def interleave_order(counts: list[int]) -> np.ndarray:
    """The stream index of each position in the pre-mixed stream (see the module docstring)."""
    keys = [(np.arange(n) + 0.5) / n for n in counts if n]
    ids = [np.full(n, i) for i, n in enumerate(counts) if n]
    if not keys:
        return np.zeros(0, dtype=np.int64)
    key, sid = np.concatenate(keys), np.concatenate(ids)
    return sid[np.lexsort((sid, key))]


def _picks(seed: int, path: str, n_rows: int, count: int) -> np.ndarray:
    rng = np.random.default_rng(int(unit_hash(seed, "premix", path) * 2**63))
    return rng.permutation(n_rows)[:count]


def write_premix(recipe: Recipe, out: Path, manifest: Manifest) -> Manifest:
    """Write OUT/premixed/; returns the manifest with its entry and shard hashes added."""
    streams = [s for s in manifest.streams if s.proportion > 0 and s.rows > 0]
    left_out = [s.path for s in manifest.streams if s not in streams]
    counts = premix_counts([s.rows for s in streams], [s.proportion for s in streams])
    picks = [_picks(recipe.seed, s.path, s.rows, c) for s, c in zip(streams, counts, strict=True)]
    with_mask = any(s.mask for s in manifest.streams)
    layout = OutLayout(out)
    writer = SubsetWriter(layout.subset(PREMIX_DIR), domain=PREMIX_DIR, with_mask=with_mask,
                          compression=recipe.output.compression, size_limit=recipe.output.shard_size_bytes,
                          doc_ids=recipe.output.doc_ids)
    readers = [SubsetReader(layout.subset(s.path)) for s in streams]
    taken, tokens = [0] * len(streams), [0] * len(streams)
    for i in interleave_order(counts).tolist():
        r = readers[i].row(int(picks[i][taken[i]]))
        row = row_of(r)  # with its document ids, when the subset has them
        if with_mask and row.mask is None:
            row.mask = np.ones(len(row.input_ids), dtype=np.uint8)
        writer.write(row, domain=r["domain"])
        taken[i] += 1
        tokens[i] += len(row.input_ids)
    writer.finish()
    del readers
    total_p = sum(s.proportion for s in streams) or 1.0
    premixed = Premix(
        path=PREMIX_DIR, rows=writer.rows, tokens=writer.tokens, pieces=writer.pieces, mask=with_mask,
        prolong_stream=f"{PREMIX_DIR}@1",
        streams=[PremixStream(path=s.path, domain=s.domain, proportion=s.proportion / total_p, rows=c, tokens=t,
                              rows_available=s.rows)
                 for s, c, t in zip(streams, counts, tokens, strict=True)],
        left_out=left_out)
    return dataclasses.replace(manifest, premixed=premixed,
                               shards={**manifest.shards, PREMIX_DIR: shard_files(layout.subset(PREMIX_DIR))},
                               indexes={**manifest.indexes, PREMIX_DIR: index_sha256(layout.subset(PREMIX_DIR))})
