"""Distributed dedup (issue 11) against the single-process dedup it replaced, on the same input.

    python benchmarks/dedup.py [--recipe recipes/demo.yaml] [--rounds 2] [--tasks 4]

Every contender runs in a fresh process, and every contender runs in every round:
- `peer`: mixcraft's dedup before issue 11 (an in-memory index in the build's own process),
  copied below verbatim and labelled; the package no longer has it;
- `stages-1`: the dedup stages on the local executor with 1 worker;
- `stages-2`: the same with 2 workers (this machine's cores).
Input: the recipe's deduplicated sources (the demo: 21 MB of books, textbooks, documentation
pages and changelogs). Printed, from one run:
1. throughput per worker (MB of input per second, divided by the workers), and stages-1 /
   peer (goal >= 5);
2. whether the kept sets, and the verdicts, are identical to the peer's;
3. peak RSS of the largest dedup task (its own VmHWM; each task is a forked process) when the
   input doubles: the recipe's dedup sources written out as one JSONL source of `--tasks`
   tasks, holding every second document by size (largest first) for 1x and all of them for 2x
   (goal: 2x / 1x within 0.9-1.1).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GOAL_SPEEDUP = 5.0
GOAL_RSS_BAND = (0.9, 1.1)


# ---- the peer: mixcraft's single-process dedup before issue 11 -------------------------------
# Copied from main@b72a6c4 (mixcraft/curate/dedup.py MinHasher and DedupIndex, and
# mixcraft/build/prepare.py run_dedup); only the names changed. Do not "improve" it: it is the
# baseline the stages are measured against.

PEER_SHINGLE_CHUNK = 4096


class PeerMinHasher:
    """datatrove's MinHash signature of a text, computed in bounded memory."""

    def __init__(self, cfg, scratch: Path):
        from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

        config = MinhashConfig(n_grams=cfg.n_grams, num_buckets=cfg.num_buckets,
                               hashes_per_bucket=cfg.hashes_per_bucket, seed=cfg.seed)
        self.step = MinhashDedupSignature(output_folder=str(scratch), config=config)
        self.config = config

    def signature(self, text: str) -> np.ndarray | None:
        from datatrove.pipeline.dedup.minhash import _mersenne_prime

        shingles = self.step.get_shingles(text)
        if shingles.size == 0:
            return None
        a, b = self.step.parameters
        mins = np.full(a.shape[1], np.iinfo(np.uint64).max, dtype=np.uint64)
        for start in range(0, len(shingles), PEER_SHINGLE_CHUNK):
            phv = (shingles[start:start + PEER_SHINGLE_CHUNK] * a + b) % _mersenne_prime
            np.minimum(mins, phv.min(axis=0), out=mins)
        if self.config.hash_config.precision == 32:
            mins = np.bitwise_and(mins, self.config.hash_config.max)
        return mins.astype(self.config.hash_config.np_dtype).reshape(self.config.num_buckets, -1)


class PeerDedupIndex:
    """First-seen wins. `check(doc)` returns None for a new text, else (reason, id of the kept copy)."""

    def __init__(self, cfg, scratch: Path):
        from datatrove.utils.hashing import HashConfig, create_hash_func

        self.exact = cfg.exact
        self.hash_text = create_hash_func(HashConfig(), str)
        self.texts: dict[int, str] = {}
        self.minhash = PeerMinHasher(cfg.minhash, scratch) if cfg.minhash else None
        self.threshold = cfg.minhash.threshold if cfg.minhash else None
        self.sigs: list[np.ndarray] = []
        self.sig_ids: list[str] = []
        self.bands: list[dict[bytes, list[int]]] = [{} for _ in range(cfg.minhash.num_buckets)] if cfg.minhash else []

    def check(self, doc_key: str, text: str) -> tuple[str, str] | None:
        if self.exact:
            h = self.hash_text(text)
            if h in self.texts:
                return "exact_duplicate", self.texts[h]
            self.texts[h] = doc_key
        if self.minhash is None:
            return None
        sig = self.minhash.signature(text)
        if sig is None:
            return None
        candidates = {i for band, table in zip(sig, self.bands, strict=True) for i in table.get(band.tobytes(), ())}
        for i in sorted(candidates):
            if float(np.mean(self.sigs[i] == sig)) >= self.threshold:
                return "near_duplicate", self.sig_ids[i]
        n = len(self.sigs)
        self.sigs.append(sig)
        self.sig_ids.append(doc_key)
        for band, table in zip(sig, self.bands, strict=True):
            table.setdefault(band.tobytes(), []).append(n)
        return None


def peer_run_dedup(recipe, layout, *, limit) -> None:
    """The pass before the tasks: verdicts for every later copy, per (source, task)."""
    from mixcraft.build.plan import split_limit
    from mixcraft.core.ledger import Ledger
    from mixcraft.core.outdir import write_atomic
    from mixcraft.readers import make_reader

    folder = layout.dedup_dir
    folder.mkdir(parents=True, exist_ok=True)
    index = PeerDedupIndex(recipe.dedup, folder / "scratch")
    wanted = recipe.dedup.sources or [s.name for s in recipe.sources]
    for source in recipe.sources:
        if source.name not in wanted:
            continue
        for task in range(source.tasks):
            reader = make_reader(source.name, source.reader, Ledger(source.name),
                                 work_dir=layout.prepare(source.name))
            cap = split_limit(limit, task, source.tasks)
            verdicts = {}
            for ordinal, doc in enumerate(reader.read(task, source.tasks)):
                if cap is not None and ordinal >= cap:
                    break
                verdict = index.check(f"{source.name}:{doc.id}", doc.text)
                if verdict:
                    verdicts[str(ordinal)] = verdict
            write_atomic(layout.verdicts(source.name, task), json.dumps(verdicts))


# ---- one contender in its own process --------------------------------------------------------

def own_peak_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))


def run_contender(kind: str, recipe_path: str, out: str) -> dict:
    """Time one dedup of the recipe into `out` (this process is fresh); report its figures."""
    from mixcraft.build.load import load_recipe
    from mixcraft.build.prepare import run_dedup
    from mixcraft.core.ledger import Ledger
    from mixcraft.core.outdir import OutLayout
    from mixcraft.readers import make_reader

    recipe, layout = load_recipe(recipe_path), OutLayout(Path(out))
    for source in recipe.sources:  # the readers' own passes (code_files grouping): not timed
        folder = layout.prepare(source.name)
        make_reader(source.name, source.reader, Ledger(source.name), work_dir=folder).prepare(folder, source.tasks)
    driver_before = own_peak_mib()
    t = time.perf_counter()
    if kind == "peer":
        peer_run_dedup(recipe, layout, limit=None)
    else:
        run_dedup(recipe, layout, limit=None, workers=int(kind.split("-")[1]))
    seconds = time.perf_counter() - t
    verdicts = {str(p.relative_to(layout.dedup_dir)): json.loads(p.read_text())
                for p in sorted(layout.dedup_dir.glob("*/*.json")) if not p.parent.name.startswith("_")}
    tasks = {}
    for p in sorted(layout.dedup_logs("task_stats").glob("*/*.json")):
        tasks.setdefault(p.parent.name, []).append(json.loads(p.read_text()))
    return {"seconds": seconds, "verdicts": verdicts, "driver_before_mib": driver_before,
            "driver_peak_mib": own_peak_mib(), "tasks": tasks}


def contender(kind: str, recipe: Path, scratch: Path) -> dict:
    out = scratch / f"{kind}-{time.monotonic_ns()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, __file__, "--child", kind, str(recipe), str(out)], env=env,
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"{kind} failed:\n{proc.stderr[-3000:]}")
    subprocess.run(["rm", "-rf", str(out)], check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- inputs ----------------------------------------------------------------------------------

def dedup_source_docs(recipe_path: Path) -> list[tuple[str, str]]:
    """(key, text) of every document of the recipe's deduplicated sources, in recipe order."""
    from mixcraft.build.load import load_recipe
    from mixcraft.core.ledger import Ledger
    from mixcraft.curate.dedup import dedup_inputs
    from mixcraft.readers import make_reader

    recipe, docs = load_recipe(recipe_path), []
    for source, task in dedup_inputs(recipe):
        reader = make_reader(source.name, source.reader, Ledger(source.name))
        docs += [(f"{source.name}:{d.id}", d.text) for d in reader.read(task, source.tasks)]
    return docs


DOUBLING_RECIPE = """\
name: dedup-bench
seq_len: 8192
dedup: {{exact: true, minhash: {{threshold: 0.8}}}}
sources:
  - name: docs
    reader: {{type: text, paths: [{paths}]}}
    proportion: 1.0
    tasks: {tasks}
"""


def write_doubling_inputs(docs: list[tuple[str, str]], folder: Path, tasks: int) -> dict[str, Path]:
    """1x: every second document by size, largest first (so both hold the largest); 2x: all.
    Each as `tasks` JSONL files (document i in file i % tasks): one file per task."""
    by_size = sorted(docs, key=lambda d: -len(d[1]))
    halves = {"1x": by_size[::2], "2x": docs}
    recipes = {}
    for name, chosen in halves.items():
        paths = [folder / f"{name}-{k}.jsonl" for k in range(tasks)]
        for k, path in enumerate(paths):
            path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in chosen[k::tasks]))
        recipes[name] = folder / f"{name}.yaml"
        recipes[name].write_text(DOUBLING_RECIPE.format(paths=", ".join(map(str, paths)), tasks=tasks))
    return recipes


# ---- comparison and report -------------------------------------------------------------------

def compare(peer: dict, stages: dict) -> tuple[int, int, int, int]:
    """(documents with a verdict in either, of which dropped by one only, verdicts that differ,
    files) between two runs' verdicts."""
    either = only_one = differ = 0
    for name in peer.keys() | stages.keys():
        a, b = peer.get(name, {}), stages.get(name, {})
        either += len(a.keys() | b.keys())
        only_one += len(a.keys() ^ b.keys())
        differ += sum(1 for k in a.keys() & b.keys() if list(a[k]) != list(b[k]))
    return either, only_one, differ, len(peer.keys() | stages.keys())


def largest_task_peak(run: dict) -> tuple[float, str]:
    return max((max(t["peak_rss_mib"] for t in tasks), stage) for stage, tasks in run["tasks"].items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "demo.yaml"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--tasks", type=int, default=4, help="tasks of the 1x/2x JSONL source")
    ap.add_argument("--child", nargs=3, metavar=("KIND", "RECIPE", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_contender(*args.child)))
        return
    with tempfile.TemporaryDirectory(prefix="mixcraft-dedup-bench-") as tmp:
        scratch = Path(tmp)
        docs = dedup_source_docs(Path(args.recipe))
        mb = sum(len(t.encode()) for _, t in docs) / 1e6
        print(f"input: {mb:.1f} MB, {len(docs):,} documents of {args.recipe}'s dedup sources; "
              f"{os.cpu_count()} CPUs")
        kinds = ["peer", "stages-1", "stages-2"]
        runs: dict[str, list[dict]] = {k: [] for k in kinds}
        for r in range(args.rounds):
            for kind in kinds:
                runs[kind].append(contender(kind, Path(args.recipe), scratch))
                print(f"  round {r + 1} {kind}: {runs[kind][-1]['seconds']:.1f} s", flush=True)
        doubling = write_doubling_inputs(docs, scratch, args.tasks)
        size = {n: run_contender_size(p) for n, p in doubling.items()}
        grown = {n: [contender("stages-1", p, scratch) for _ in range(args.rounds)] for n, p in doubling.items()}
    report(runs, mb, grown, size)


def run_contender_size(recipe: Path) -> float:
    files = recipe.parent.glob(f"{recipe.stem}-*.jsonl")
    return sum(len(json.loads(line)["text"].encode()) for f in files for line in f.open()) / 1e6


def report(runs: dict, mb: float, grown: dict, size: dict) -> None:
    sec = {k: median(r["seconds"] for r in v) for k, v in runs.items()}
    per_worker = {"peer": mb / sec["peer"], "stages-1": mb / sec["stages-1"], "stages-2": mb / sec["stages-2"] / 2}
    print("\nthroughput (median of rounds):")
    for k in runs:
        print(f"  {k:9s} {sec[k]:7.1f} s  {mb / sec[k]:6.2f} MB/s  {per_worker[k]:6.2f} MB/s per worker")
    speedup = per_worker["stages-1"] / per_worker["peer"]
    print(f"  per worker, stages / peer: {speedup:.1f}x (goal >= {GOAL_SPEEDUP:g}x: "
          f"{'MET' if speedup >= GOAL_SPEEDUP else 'MISSED'}); 2 workers: "
          f"{per_worker['stages-2'] / per_worker['peer']:.1f}x per worker, {sec['peer'] / sec['stages-2']:.1f}x wall")
    either, only_one, differ, files = compare(runs["peer"][0]["verdicts"], runs["stages-1"][0]["verdicts"])
    same_runs = all(r["verdicts"] == runs["stages-1"][0]["verdicts"] for k in ("stages-1", "stages-2") for r in runs[k])
    print(f"\nequality with the peer over {files} verdict files: {either} documents dropped by either, "
          f"{only_one} dropped by one only (kept sets {'EQUAL' if not only_one else 'DIFFER'}), "
          f"{differ} verdicts naming another original")
    print(f"  every stages run (1 and 2 workers, all rounds) wrote the same verdicts: {same_runs}")
    stage_peaks = {k: median(largest_task_peak(r)[0] for r in v) for k, v in grown.items()}
    stage = largest_task_peak(grown["2x"][0])[1]
    ratio = stage_peaks["2x"] / stage_peaks["1x"]
    lo, hi = GOAL_RSS_BAND
    print(f"\npeak RSS of the largest dedup task (stages-1; the largest is a {stage} task):")
    for k in grown:
        drv = median(r["driver_peak_mib"] for r in grown[k])
        print(f"  {k}: {size[k]:.1f} MB input, {stage_peaks[k]:.0f} MiB (driver process {drv:.0f} MiB)")
    print(f"  2x / 1x = {ratio:.3f} (goal {lo}-{hi}: {'MET' if lo <= ratio <= hi else 'MISSED'})")
    peer_drv = median(r["driver_peak_mib"] for r in runs["peer"])
    print(f"  (the peer's one process on the full input: {peer_drv:.0f} MiB)")


if __name__ == "__main__":
    main()
