"""Build throughput against its peers, in one run on the same real text (the demo corpus).

Every contender runs in every round, back to back, and each ratio is taken within a round (the
machine is shared; the median over rounds is checked against the goal):

- whole processes, timed from outside as a user runs them:
  `mixcraft build` with 1 and 2 workers (read JSONL, tokenize, pack 64K rows, write zstd MDS,
  merge, manifest: start-up and exit included), against bare tiktoken in a process of its own
  (load the same rank file, read the same JSONL, encode), and two such processes at once on
  halves of the files: what 2 workers could reach on this machine;
- in this process: bare HF tokenizers, and datatrove's DocumentTokenizer as datatrove runs it;
- a tiny build (`--limit 8`): its wall time and the peak RSS of its processes.

The text is the demo corpus with repositories cut back into files (benchmarks/corpus.py), about
60 MB, in 8 JSONL files of equal size, so that 2 workers have equal work.

    python benchmarks/build_throughput.py [--size-mb 60] [--rounds 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from corpus import demo_files, text_recipe, write_jsonl_shards

ROOT = Path(__file__).resolve().parent.parent
BARE = """
import json, sys, tiktoken
from tiktoken.load import load_tiktoken_bpe
from mixcraft.core.tokenize import LLAMA3_PATTERN, llama3_files
enc = tiktoken.Encoding(name="bare", pat_str=LLAMA3_PATTERN, mergeable_ranks=load_tiktoken_bpe(str(llama3_files()[1])),
                        special_tokens={})
n = 0
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            n += len(enc.encode_ordinary(json.loads(line)["text"]))
print(n)
"""
GOALS = {  # issue "Build at ProLong scale": (numerator, denominator, at least)
    "whole-process build, 1 worker / bare tiktoken process": ("build_1w", "tiktoken", 0.80),
    "whole-process build, 2 workers / 2 tiktoken processes": ("build_2w", "tiktoken_2p", 0.90),
    "whole-process build, 1 worker / DocumentTokenizer": ("build_1w", "datatrove", 3.0),
}
TINY_WALL_S, TINY_RSS_MIB = 1.5, 300


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def run_procs(cmds: list[list[str]]) -> tuple[float, list[str]]:
    """Start the commands together; wall seconds until the last ends, and their outputs."""
    t = time.perf_counter()
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env()) for c in cmds]
    outs = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"{' '.join(p.args)} failed:\n{err[-2000:]}")
        outs.append(out)
    return time.perf_counter() - t, outs


def mixcraft_build(recipe: Path, out: Path, workers: int, *extra: str) -> float:
    shutil.rmtree(out, ignore_errors=True)
    wall, _ = run_procs([[sys.executable, "-m", "mixcraft", "build", str(recipe), "--out", str(out),
                          "--workers", str(workers), *extra]])
    return wall


def bare_hf(tok, texts: list[str]) -> int:
    return sum(len(tok.hf.encode(t, add_special_tokens=False).ids) for t in texts)


def datatrove_tokenizer(tok, docs: list[tuple[str, str]], work: Path) -> int:
    from datatrove.data import Document
    from datatrove.pipeline.tokens import DocumentTokenizer

    shutil.rmtree(work, ignore_errors=True)
    step = DocumentTokenizer(output_folder=str(work), tokenizer_name_or_path=str(tok.json_path), eos_token=None)
    step.run(Document(text=t, id=i) for i, t in docs)
    return int(step.stats["tokens"].total)


def in_process(fn) -> tuple[float, int]:
    t = time.perf_counter()
    n = fn()
    return time.perf_counter() - t, n


def one_round(rnd: int, ctx: dict) -> dict[str, float]:
    """Wall seconds of every contender, back to back."""
    files, work = ctx["files"], ctx["work"]
    walls = {
        "tiktoken": run_procs([[sys.executable, "-c", BARE, *map(str, files)]])[0],
        "build_1w": mixcraft_build(ctx["recipe"], work / "out1", 1),
        "tiktoken_2p": run_procs([[sys.executable, "-c", BARE, *map(str, files[::2])],
                                  [sys.executable, "-c", BARE, *map(str, files[1::2])]])[0],
        "build_2w": mixcraft_build(ctx["recipe"], work / "out2", 2),
        "hf": in_process(lambda: bare_hf(ctx["tok"], ctx["texts"]))[0],
        "datatrove": in_process(lambda: datatrove_tokenizer(ctx["tok"], ctx["docs"], work / "dt"))[0],
    }
    line = "  ".join(f"{k} {v:6.2f} s" for k, v in walls.items())
    print(f"  round {rnd}: {line}  (load {os.getloadavg()[0]:.1f})", flush=True)
    return walls


MEASURE = """
import resource, subprocess, sys, time
t = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def tiny_build(ctx: dict) -> tuple[float, float]:
    """Wall seconds of `mixcraft build --limit 8` and the peak RSS (MiB) of its processes, from a
    wrapper process whose only children are that build's."""
    out = ctx["work"] / "tiny"
    shutil.rmtree(out, ignore_errors=True)
    _, (line,) = run_procs([[sys.executable, "-c", MEASURE, sys.executable, "-m", "mixcraft", "build",
                             str(ctx["recipe"]), "--out", str(out), "--workers", "1", "--limit", "8"]])
    wall, kib = line.split()
    return float(wall), int(kib) / 1024


def setup(size_mb: float, work: Path) -> dict:
    from mixcraft.core.tokenize import load_tokenizer

    docs, size = [], 0
    for doc in demo_files():
        if size >= size_mb * 1e6:
            break
        docs.append(doc)
        size += len(doc[1].encode("utf-8"))
    files = write_jsonl_shards(docs, work / "jsonl", n_files=8)
    recipe = work / "bench.yaml"
    recipe.write_text(yaml.safe_dump(text_recipe("bench", files, seq_len=65536, tasks=8)))
    tok = load_tokenizer("llama3")
    tokens = int(run_procs([[sys.executable, "-c", BARE, *map(str, files)]])[1][0])
    print(f"corpus: {len(docs):,} documents, {size / 1e6:.1f} MB, {tokens:,} tokens in 8 JSONL files; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    return {"docs": docs, "texts": [t for _, t in docs], "files": files, "recipe": recipe, "work": work, "tok": tok,
            "tokens": tokens}


def report(rounds: list[dict[str, float]], tiny: list[tuple[float, float]], tokens: int) -> dict:
    """Ratios of throughput (= inverse wall ratios on the same tokens), per round and median."""
    print(f"\nthroughput ratios (same {tokens:,} tokens; per round, goals checked on the median)")
    limit = [r["tiktoken"] / r["tiktoken_2p"] for r in rounds]
    print(f"  2 tiktoken processes / 1 (what these CPUs give now): {_fmt(limit)}")
    result = {}
    for label, (num, den, goal) in GOALS.items():
        ratios = [r[den] / r[num] for r in rounds]
        med = statistics.median(ratios)
        result[label] = med
        print(f"  {label}: {_fmt(ratios)}  goal >= {goal}x  {'met' if med >= goal else f'MISSED by {goal - med:.2f}x'}")
    print(f"  bare tiktoken process / bare HF tokenizers: {_fmt([r['hf'] / r['tiktoken'] for r in rounds])}")
    print(f"  build 2 workers / 1 worker: {_fmt([r['build_1w'] / r['build_2w'] for r in rounds])}")
    rate = [tokens / r["build_1w"] / 1e6 for r in rounds]
    print(f"  whole-process build, 1 worker: median {statistics.median(rate):.2f} M tokens/s")
    walls, rss = [w for w, _ in tiny], max(m for _, m in tiny)
    med = statistics.median(walls)
    print(f"  tiny build (--limit 8): median {med:.2f} s wall ({', '.join(f'{w:.2f}' for w in walls)})  goal <= "
          f"{TINY_WALL_S} s  {'met' if med <= TINY_WALL_S else 'MISSED'}")
    print(f"  tiny build peak RSS of any of its processes: {rss:.0f} MiB (an upper bound of a worker's RSS before its "
          f"first document)  goal <= {TINY_RSS_MIB} MiB  {'met' if rss <= TINY_RSS_MIB else 'MISSED'}")
    return {**result, "tiny_wall_s": med, "tiny_rss_mib": rss}


def _fmt(ratios: list[float]) -> str:
    return f"median {statistics.median(ratios):.2f}x (" + ", ".join(f"{x:.2f}" for x in ratios) + ")"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mb", type=float, default=60, help="corpus size (default 60 MB)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temp folder)")
    ap.add_argument("--json", type=Path, default=None, help="write the medians here")
    args = ap.parse_args()
    import datatrove.utils.logging  # noqa: F401  (installs its console logger on import)
    from loguru import logger

    logger.remove()  # datatrove's steps log at INFO to the console
    work = args.keep or Path(tempfile.mkdtemp(prefix="mixcraft-bench-"))
    try:
        ctx = setup(args.size_mb, work)
        rounds = [one_round(r + 1, ctx) for r in range(args.rounds)]
        tiny = [tiny_build(ctx) for _ in range(5)]
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    result = report(rounds, tiny, ctx["tokens"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
