"""What the doc_ids/doc_offsets columns cost: stored bytes and write time, with vs without.

    python benchmarks/doc_ids_overhead.py [OUT]      (default out/demo; build it with `make demo`)

Every subset's rows are read once into memory, then written into a scratch folder twice per
round, with and without the columns (zstd, as the build does), one subset after the other,
alternating which way goes first.
Prints each subset's stored bytes both ways and the ratios over all subsets: bytes, and write
seconds (median of the rounds, each ratio taken within its round).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from mixcraft.core.manifest import read_manifest
from mixcraft.mds import SubsetWriter, iter_rows, row_of

ROUNDS = 11  # a round writes the demo's 2.9M tokens twice in about 0.2 s: noisy on shared CPUs, so a median of many


def write(rows, folder: Path, *, doc_ids: bool, with_mask: bool) -> tuple[int, float]:
    """(stored bytes, seconds) of writing `rows` as one subset part."""
    start = time.perf_counter()
    writer = SubsetWriter(folder, domain="d", with_mask=with_mask, compression="zstd", size_limit=1 << 26,
                          doc_ids=doc_ids)
    for row in rows:
        writer.write(row)
    writer.finish()
    return sum(p.stat().st_size for p in folder.glob("shard.*")), time.perf_counter() - start


def main(out: Path) -> None:
    manifest = read_manifest(out)
    subsets = [(s.path, s.mask, [row_of(r) for r in iter_rows(out / s.path)]) for s in manifest.streams]
    assert all(rows and rows[0].doc_ids for _, _, rows in subsets), f"{out} was built without doc_ids"
    n_rows = sum(len(rows) for _, _, rows in subsets)
    print(f"{out}: {len(subsets)} subsets, {n_rows:,} rows of {manifest.seq_len:,} tokens")
    time_ratios, sizes = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(ROUNDS):
            secs = {True: 0.0, False: 0.0}
            for k, (path, mask, rows) in enumerate(subsets):  # each subset both ways in turn, first one alternating
                for on in ((True, False) if (r + k) % 2 == 0 else (False, True)):
                    stored, s = write(rows, Path(tmp) / f"{r}-{on}-{path.replace('/', '_')}", doc_ids=on,
                                      with_mask=mask)
                    secs[on] += s
                    sizes[path, on] = stored
            time_ratios.append(secs[True] / secs[False])
            print(f"  round {r + 1}: write {secs[True]:.3f} s with the columns, {secs[False]:.3f} s without")
    for path, _, rows in subsets:
        on, off = sizes[path, True], sizes[path, False]
        print(f"  {path:24} {len(rows):6,} rows  {on:>12,} bytes with  {off:>12,} without  +{100 * (on - off) / off:.3f}%")
    on, off = (sum(v for (_, o), v in sizes.items() if o is flag) for flag in (True, False))
    print(f"stored bytes with / without: {on / off:.4f} ({on:,} / {off:,})")
    print(f"write seconds with / without: median {statistics.median(time_ratios):.3f} "
          f"({', '.join(f'{x:.3f}' for x in time_ratios)})")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "out/demo"))
