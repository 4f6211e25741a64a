"""Packing quality and memory on the demo corpus' real document lengths.

Part 1, at L = 65,536: padding %, % of documents shorter than L that get split, rows, and
tokens lost, for three packings of the same documents:
- prolong: ProLong's datatools pipeline: documents >= L cut into L chunks by
  `--split_by_lengths` (tails lost), shorter ones concatenated greedily (cut at row ends);
- best_fit: best-fit-decreasing over a bounded buffer (mixcraft's `best_fit`);
- concat_chunk: everything concatenated and cut every L tokens.
It runs on two granularities of the same text: the demo recipe's documents (a repository is
one document, as ProLong concatenates them) and the corpus' files (benchmarks/corpus.py).

Part 2: peak RSS per worker of a 2-worker build with 512K rows (eight 64K chunks per row, and
best-fit whole documents), for the corpus once and twice over: it must stay flat.

    python benchmarks/packing.py [--skip-rss | --skip-table]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from corpus import ROOT, demo_documents, demo_files, text_recipe, write_jsonl_shards

from mixcraft.core.pack import BestFitPacker, ChunkPacker, GreedyPacker, TokDoc

L = 65_536
RSS_GOAL_BYTES = 2 << 30


class Tally:
    """An `Account` that sums what the benchmark reports."""

    def __init__(self, seq_len: int):
        self.seq_len = seq_len
        self.short_docs = self.short_split = self.lost = 0

    def kept(self, doc, *, packed, tail, split):
        self.lost += tail
        self._short(doc, split)

    def dropped(self, doc, reason, tokens):
        self.lost += tokens
        self._short(doc, False)

    def _short(self, doc, split: bool) -> None:
        if len(doc.ids) < self.seq_len:
            self.short_docs += 1
            self.short_split += int(split)


def pack_mode(mode: str, lengths: list[int], zeros: np.ndarray) -> dict:
    """Pack documents of `lengths` (ids are views of one zero buffer: only lengths matter)."""
    tally = Tally(L)
    greedy = GreedyPacker(L, tally)
    chunker = ChunkPacker(L, L, tally)
    best = BestFitPacker(L, tally, pad_id=0)
    rows = padding = 0
    start = time.perf_counter()
    for i, n in enumerate(lengths):
        doc = TokDoc(f"d{i}", zeros[:n])
        packer = {"best_fit": best, "concat_chunk": greedy}.get(mode) or (chunker if n >= L else greedy)
        for row in packer.add(doc):
            rows += 1
            padding += row.padding
    for packer in (greedy, chunker, best):
        for row in packer.finish():
            rows += 1
            padding += row.padding
    total = sum(lengths)
    return {"rows": rows, "padding_pct": 100 * padding / max(1, rows * L),
            "short_split_pct": 100 * tally.short_split / max(1, tally.short_docs), "short_docs": tally.short_docs,
            "lost_pct": 100 * tally.lost / total, "seconds": time.perf_counter() - start}


def packing_table(name: str, lengths: list[int]) -> dict[str, dict]:
    zeros = np.zeros(max(lengths), dtype=np.uint32)
    n_short = sum(n < L for n in lengths)
    print(f"\n{name}: {len(lengths):,} documents, {sum(lengths):,} tokens, {n_short:,} shorter than {L:,}")
    print(f"  {'mode':<13}{'rows':>7}{'padding %':>11}{'short docs split %':>20}{'tokens lost %':>15}{'s':>7}")
    out = {}
    for mode in ("prolong", "best_fit", "concat_chunk"):
        r = out[mode] = pack_mode(mode, lengths, zeros)
        print(f"  {mode:<13}{r['rows']:>7,}{r['padding_pct']:>11.3f}{r['short_split_pct']:>20.2f}"
              f"{r['lost_pct']:>15.3f}{r['seconds']:>7.2f}")
    bf = out["best_fit"]
    print(f"  best_fit goals: padding {bf['padding_pct']:.3f}% (<= 0.5%: {'met' if bf['padding_pct'] <= 0.5 else 'MISSED'}), "
          f"short documents split {bf['short_split_pct']:.2f}% (0: {'met' if bf['short_split_pct'] == 0 else 'MISSED'})")
    return out


def rss_child(recipe_path: Path, out: Path) -> None:
    """In a fresh process: a 2-worker build; print the peak RSS of the workers and of this one."""
    from mixcraft.build.load import load_recipe
    from mixcraft.build.run import BuildOptions, build

    manifest = build(load_recipe(recipe_path), out, BuildOptions(workers=2, show_progress=False))
    kib = 1024  # ru_maxrss is in KiB on Linux
    print(json.dumps({
        "worker_peak_rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * kib,
        "parent_peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kib,
        "rows": sum(s.rows for s in manifest.streams),
        "tokens": sum(s.tokens for s in manifest.streams),
    }))


def rss_table(work: Path) -> None:
    docs = [(f"{src}/{i}", text) for src, i, text in demo_documents()]
    print(f"\npeak RSS, 2 workers, 524,288-token rows (stage-2 layout: eight 64K chunks per row; and best-fit "
          f"whole documents); largest document {max(len(t) for _, t in docs) / 1e6:.1f}M characters")
    results = []
    for copies in (1, 2):
        corpus = [(f"{c}/{i}", t) for c in range(copies) for i, t in docs]
        paths = write_jsonl_shards(corpus, work / f"rss{copies}", n_files=4 * copies)
        sources = [{"name": "stage2", "buckets": [{"min_tokens": L, "chunk_tokens": L, "proportion": 0.5}]},
                   {"name": "best_fit", "packing": "best_fit", "proportion": 0.5}]
        recipe = work / f"rss{copies}.yaml"
        recipe.write_text(yaml.safe_dump(text_recipe(f"rss{copies}", paths, seq_len=8 * L, tasks=len(paths),
                                                     sources=sources)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        res = subprocess.run([sys.executable, __file__, "--rss-child", str(recipe), str(work / f"out{copies}")],
                             capture_output=True, text=True, env=env, check=True)
        r = json.loads(res.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"  corpus x{copies}: {sum(len(t) for _, t in corpus) / 1e6:6.1f}M chars, {r['tokens']:>12,} tokens "
              f"in {r['rows']:,} rows: worker peak RSS {r['worker_peak_rss'] / 2**30:.2f} GiB, "
              f"coordinator {r['parent_peak_rss'] / 2**30:.2f} GiB")
    grow = results[1]["worker_peak_rss"] / results[0]["worker_peak_rss"]
    peak = max(r["worker_peak_rss"] for r in results)
    print(f"  worker peak x2 corpus / x1 corpus: {grow:.3f}x; goal <= 2 GiB per worker: "
          f"{'met' if peak <= RSS_GOAL_BYTES else 'MISSED'} ({peak / 2**30:.2f} GiB)")


def tokenized_lengths(texts: list[str]) -> list[int]:
    from mixcraft.core.tokenize import load_tokenizer

    tok = load_tokenizer("llama3")
    return [len(tok.encode(t)) for t in texts]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-rss", action="store_true", help="only the packing table")
    ap.add_argument("--skip-table", action="store_true", help="only the peak RSS")
    ap.add_argument("--rss-child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        from loguru import logger

        logger.remove()
        return rss_child(*args.rss_child)
    if not args.skip_table:
        packing_table("demo documents (a repository is one document)",
                      [n for n in tokenized_lengths([t for _, _, t in demo_documents()]) if n])
        packing_table("demo files (repositories cut into files)",
                      [n for n in tokenized_lengths([t for _, t in demo_files()]) if n])
    if not args.skip_rss:
        with tempfile.TemporaryDirectory(prefix="mixcraft-bench-") as tmp:
            rss_table(Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
