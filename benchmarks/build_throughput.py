"""Build throughput against its peers, in one run on the same real text (the demo corpus).

Prints tokens/s for: bare tiktoken encode, bare HF tokenizers encode (both one thread, one
document at a time), datatrove's DocumentTokenizer (as datatrove runs it: encode_batch, which
uses every core), and the mixcraft end-to-end build (read JSONL, tokenize, pack 64K rows, write
zstd MDS, merge, manifest) with 1 and with 2 workers; then the ratios against the goals.
The CPUs are shared with other work, so the fast contenders run back to back in several rounds
and each ratio is taken within a round (the median over rounds is checked against the goal);
CPU seconds are printed beside wall seconds.

The text is the demo corpus with repositories cut back into files (benchmarks/corpus.py), in
8 JSONL files of equal size, so that 2 workers have equal work: as one document, SQLAlchemy
alone is 65% of the text and would leave one worker idle.

    python benchmarks/build_throughput.py [--max-docs N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml
from corpus import demo_files, text_recipe, write_jsonl_shards

GOALS = {  # issue 4: (numerator, denominator, at least)
    "build 1 worker / bare tiktoken (per worker)": ("build_1w", "tiktoken", 0.80),
    "build 1 worker / DocumentTokenizer": ("build_1w", "datatrove", 3.0),
    "build 2 workers / DocumentTokenizer": ("build_2w", "datatrove", 3.0),
    "build 2 workers / build 1 worker": ("build_2w", "build_1w", 1.8),
}


def cpu_seconds() -> float:
    """User + system CPU of this process and its finished children."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def timed(fn) -> dict:
    """Run `fn` (returning a token count); wall and CPU seconds."""
    cpu, wall = cpu_seconds(), time.perf_counter()
    tokens = fn()
    return {"tokens": tokens, "wall_s": time.perf_counter() - wall, "cpu_s": cpu_seconds() - cpu}


def bare_tiktoken(tok, texts: list[str]) -> int:
    enc = tok._tiktoken  # the same Encoding mixcraft builds, called directly
    return sum(len(enc.encode_ordinary(t)) for t in texts)


def bare_tiktoken_2threads(tok, texts: list[str]) -> int:
    """What these 2 CPUs give right now: the physical limit for 2 workers."""
    return sum(len(ids) for ids in tok._tiktoken.encode_ordinary_batch(texts, num_threads=2))


def bare_hf(tok, texts: list[str]) -> int:
    return sum(len(tok.hf.encode(t, add_special_tokens=False).ids) for t in texts)


def datatrove_tokenizer(tok, docs: list[tuple[str, str]], work: Path) -> int:
    from datatrove.data import Document
    from datatrove.pipeline.tokens import DocumentTokenizer

    step = DocumentTokenizer(output_folder=str(work / "datatrove"), tokenizer_name_or_path=str(tok.json_path),
                             eos_token=None)
    step.run(Document(text=t, id=i) for i, t in docs)
    return int(step.stats["tokens"].total)


def mixcraft_build(recipe_path: Path, out: Path, workers: int) -> int:
    from mixcraft.build.load import load_recipe
    from mixcraft.build.run import BuildOptions, build

    manifest = build(load_recipe(recipe_path), out, BuildOptions(workers=workers, show_progress=False))
    tokens = manifest.ledger["files"].tokens
    return tokens.kept + sum(tokens.dropped.values())  # every token the build encoded


def run_all(docs: list[tuple[str, str]], work: Path, rounds: int) -> list[dict[str, dict]]:
    """Each round runs every contender back to back (the two slow HF-based ones in round 1
    only). Ratios are taken within a round, where the background load is about the same."""
    from mixcraft.build.load import load_recipe
    from mixcraft.build.run import prewarm
    from mixcraft.core.tokenize import load_tokenizer

    tok = load_tokenizer("llama3")
    texts = [t for _, t in docs]
    paths = write_jsonl_shards(docs, work / "jsonl", n_files=8)
    recipe_path = work / "bench.yaml"
    recipe_path.write_text(yaml.safe_dump(text_recipe("bench", paths, seq_len=65536, tasks=8)))
    prewarm(load_recipe(recipe_path))  # imports and tokenizer load are start-up, not throughput
    contenders = {"tiktoken": lambda: bare_tiktoken(tok, texts),
                  "build_1w": lambda: mixcraft_build(recipe_path, fresh(work / "out1"), 1),
                  "tiktoken_2t": lambda: bare_tiktoken_2threads(tok, texts),
                  "build_2w": lambda: mixcraft_build(recipe_path, fresh(work / "out2"), 2),
                  "hf": lambda: bare_hf(tok, texts),
                  "datatrove": lambda: datatrove_tokenizer(tok, docs, fresh(work / "dt"))}
    out = []
    for rnd in range(1, rounds + 1):
        results = {}
        for name, fn in contenders.items():
            if rnd > 1 and name in ("hf", "datatrove"):
                continue
            r = results[name] = timed(fn)
            print(f"  round {rnd} {name:<11} {r['tokens']:>11,} tokens {r['wall_s']:6.2f} s wall {r['cpu_s']:6.2f} s CPU "
                  f"{r['tokens'] / r['wall_s'] / 1e6:6.3f} M tok/s  (load {os.getloadavg()[0]:.1f})", flush=True)
        out.append(results)
    return out


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    return path


def rate(r: dict) -> float:
    return r["tokens"] / r["wall_s"]


def report(rounds: list[dict[str, dict]]) -> bool:
    """Per-round ratios and their median; the DocumentTokenizer and HF ones use round 1."""
    first = rounds[0]
    print("\nratios of wall-clock tokens/s (per round; goals are checked on the median)")
    print(f"  bare tiktoken / bare HF tokenizers: {rate(first['tiktoken']) / rate(first['hf']):.2f}x; "
          f"per CPU-second {first['hf']['cpu_s'] / first['tiktoken']['cpu_s']:.2f}x")
    limit = [rate(r["tiktoken_2t"]) / rate(r["tiktoken"]) for r in rounds]
    print(f"  bare tiktoken 2 threads / 1 thread (what these 2 CPUs give now): {_fmt(limit)}")
    ok = True
    for label, (num, den, goal) in GOALS.items():
        ratios = [rate(r[num]) / rate(r[den]) for r in rounds if den in r]
        med = statistics.median(ratios)
        ok &= med >= goal
        print(f"  {label}: {_fmt(ratios)}  goal >= {goal}x  {'met' if med >= goal else f'MISSED by {goal - med:.2f}x'}")
    scaling = [(rate(r["build_2w"]) / rate(r["build_1w"])) / (rate(r["tiktoken_2t"]) / rate(r["tiktoken"]))
               for r in rounds]
    print(f"  (build 2 workers / 1 worker) / (bare tiktoken 2 threads / 1 thread): {_fmt(scaling)}")
    build_cpu = [r["build_1w"]["cpu_s"] for r in rounds]
    bare_cpu = [r["tiktoken"]["cpu_s"] for r in rounds]
    print(f"  CPU seconds, bare tiktoken / build 1 worker: {_fmt([b / c for b, c in zip(bare_cpu, build_cpu, strict=True)])}")
    return ok


def _fmt(ratios: list[float]) -> str:
    return f"median {statistics.median(ratios):.2f}x (" + ", ".join(f"{x:.2f}" for x in ratios) + ")"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-docs", type=int, default=None, help="use the first N documents (a quick run)")
    ap.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temp folder)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of the fast contenders")
    args = ap.parse_args()
    import datatrove.utils.logging  # noqa: F401  (installs its console logger on import)
    from loguru import logger

    logger.remove()  # datatrove's steps log at INFO to the console
    docs = demo_files()[: args.max_docs]
    print(f"corpus: demo corpus as files, {len(docs):,} documents, {sum(len(t) for _, t in docs) / 1e6:.1f}M "
          f"characters; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    work = args.keep or Path(tempfile.mkdtemp(prefix="mixcraft-bench-"))
    try:
        results = run_all(docs, work, args.rounds)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"load average {os.getloadavg()[0]:.2f} at end (other processes share these CPUs)")
    report(results)


if __name__ == "__main__":
    sys.exit(main())
