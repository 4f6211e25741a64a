"""Cost model: what `recipes/prolong.yaml` costs on a cluster, from rates measured here.

1. Measures each stage's rate on one core, on the demo corpus (text as it is on disk):
   read (JSONL parse), read+decompress (zstd JSONL, SlimPajama's format), filter (datatrove's
   Gopher + FineWeb quality filters), MinHash signatures, shuffle map (rows -> repository-hash
   partitions, as Parquet) and reduce (group a partition into repositories), tokenize (tiktoken,
   Llama-3), pack + write (64K rows, zstd MDS), and the final index merge.
2. Takes the work of each stage of prolong.yaml from the real datasets' sizes (constants below,
   each with its reference; the few that are assumptions say so), and the fan-out of each stage
   (the recipe's `tasks`, the datasets' file counts).
3. Prints, for 1, 8, 64 and 256 nodes of 32 cores, each stage's wall time (tasks of equal work
   run in whole waves of `cores`, each node reading at most NODE_READ_GBPS), the total, the core-hours, and the stage
   on the critical path; and checks the goal: wall at 64 nodes <= 1/50 of 1 node.

    python benchmarks/scale.py [--sample-mb 20]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
import zstandard
from corpus import FILE_HEADER, demo_documents

from mixcraft.build.load import load_recipe
from mixcraft.core.ledger import Ledger
from mixcraft.core.pack import TokDoc, make_packer
from mixcraft.core.tokenize import load_tokenizer
from mixcraft.mds import SubsetWriter, merge_subset

ROOT = Path(__file__).resolve().parent.parent
CORES_PER_NODE = 32
NODES = (1, 8, 64, 256)
NODE_READ_GBPS = 2.0  # assumption: what one node reads from a shared file system or object store
STAGE_LAUNCH_S = 30.0  # assumption: scheduling a stage's tasks (Slurm array / Ray) and its workers' start-up
BYTES_PER_TOKEN = {"code": 3.4, "text": 4.4}  # measured below on the demo corpus; defaults if skipped

# The datasets prolong.yaml reads (bytes of text as stored, before our own compression).
STACK_BYTES = 6.4e12  # bigcode/the-stack v1.2 dataset card: "6.4 TB of source code in 358 languages"
STACK_FILES = 5_000  # assumption (order of magnitude of its parquet shards); the map's fan-out is at most this
STACK_LONG_REPO_TOKEN_SHARE = 0.5  # assumption: share of The Stack's tokens in repositories >= 64K tokens
SLIMPAJAMA_BYTES = 895e9  # cerebras/SlimPajama-627B card: 895 GB uncompressed JSONL (59,166 .jsonl.zst files)
SLIMPAJAMA_TOKENS = 627e9  # same card
SLIMPAJAMA_FILES = 59_166
# SlimPajama's subsets as shares of its tokens (Soboleva et al. 2023, SlimPajama, Table 1): the
# sources prolong.yaml selects from it with `where`.
SLIMPAJAMA_SHARE = {"RedPajamaBook": 0.042, "RedPajamaArXiv": 0.046, "RedPajamaStackExchange": 0.033}
# The pieces a dataset's tasks can share out, where they may be fewer than a source's `tasks`. A
# task reads whole data files, and a dataset with fewer files than tasks has its Parquet files cut
# into row-group ranges (readers/datafiles.py). allenai/tulu-v2-sft-mixture: 3 Parquet files on
# the hub (data/train-0000{0,1,2}-of-00003) of 326K conversations; `datasets` writes row groups of
# 1,000 rows (datasets.config.DEFAULT_MAX_BATCH_SIZE), so about 326 pieces. The other datasets
# are taken to have at least their source's `tasks` files.
DATASET_PIECES = {"cerebras/SlimPajama-627B": SLIMPAJAMA_FILES, "allenai/tulu-v2-sft-mixture": 326}
TOTAL_TOKENS = 20e9  # recipes/prolong.yaml total_tokens


@dataclass(frozen=True)
class Stage:
    name: str
    tasks: int
    core_seconds: float  # work at the measured one-core rates
    read_bytes: float  # bytes read from storage (the I/O bound)
    longest: float  # core-seconds of its longest task


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def measure(sample_mb: float, work: Path) -> dict[str, float]:
    """Rates on one core, in MB/s of text (or tokens/s), on `sample_mb` of the demo corpus."""
    by_source: dict[str, list] = {}
    for source, doc_id, text in demo_documents():
        by_source.setdefault(source, []).append((source, doc_id, text))
    docs, size = [], 0
    while size < sample_mb * 1e6 and any(by_source.values()):  # round-robin: every source in the sample
        for queue in by_source.values():
            if queue:
                docs.append(queue.pop(0))
                size += len(docs[-1][2].encode())
    mb = size / 1e6
    lines = [json.dumps({"id": i, "text": t}) for _, i, t in docs]
    blob = ("\n".join(lines) + "\n").encode()
    rates = {"read_jsonl": mb / timed(lambda: [json.loads(line) for line in blob.splitlines()])[0]}
    packed = zstandard.ZstdCompressor(level=3).compress(blob)
    dec = lambda: [json.loads(line) for line in io.BytesIO(zstandard.ZstdDecompressor().decompress(packed)).read().splitlines()]  # noqa: E731
    rates["read_jsonl_zst"] = mb / timed(dec)[0]
    rates.update(_filter_minhash(docs, mb, work))
    rates.update(_shuffle(docs, work))
    tok = load_tokenizer("llama3")
    seconds, ids = timed(lambda: [tok.encode(t) for _, _, t in docs])
    n_tokens = sum(len(x) for x in ids)
    rates["tokenize_tok_s"] = n_tokens / seconds
    code_chars = sum(len(t.encode()) for s, _, t in docs if s == "code_repos")
    code_tokens = sum(len(x) for (s, _, _), x in zip(docs, ids, strict=True) if s == "code_repos")
    rates["bytes_per_token_code"] = code_chars / max(code_tokens, 1)
    rates["bytes_per_token_text"] = (size - code_chars) / max(n_tokens - code_tokens, 1)
    rates["pack_write_tok_s"] = _pack_write(ids, work)
    rates["merge_parts_s"] = _merge(work)
    return rates


def _filter_minhash(docs, mb: float, work: Path) -> dict[str, float]:
    from datatrove.data import Document
    from datatrove.pipeline.filters import FineWebQualityFilter, GopherQualityFilter

    from mixcraft.core.recipe import MinhashParams
    from mixcraft.curate.minhash import MinHasher, datatrove_config

    prose = [Document(text=t, id=i) for s, i, t in docs if s != "code_repos"]
    prose_mb = sum(len(d.text.encode()) for d in prose) / 1e6
    gopher, fineweb = GopherQualityFilter(), FineWebQualityFilter()
    gopher.filter(prose[0]), fineweb.filter(prose[0])  # loads the word tokenizer: start-up, not rate
    seconds, _ = timed(lambda: [(gopher.filter(d), fineweb.filter(d)) for d in prose])
    hasher = MinHasher(datatrove_config(MinhashParams()), work / "mh")
    hasher.signature(docs[0][2])
    minhash_s, _ = timed(lambda: [hasher.signature(t) for _, _, t in docs])
    return {"filter": prose_mb / seconds, "minhash": mb / minhash_s}


def _shuffle(docs, work: Path) -> dict[str, float]:
    """The code_files reader's two passes on The Stack's columns: partition, then group."""
    from mixcraft.readers.code_files import CodeFilesConfig, CodeFilesReader

    rows = []
    for source, doc_id, text in docs:
        if source != "code_repos":
            continue
        parts = FILE_HEADER.split(text)
        rows += [{"max_stars_repo_name": doc_id, "max_stars_repo_path": p, "content": b}
                 for p, b in zip(parts[1::2], parts[2::2], strict=True)]
    data = work / "stack"
    data.mkdir()
    for k in range(4):
        pq.write_table(pa.Table.from_pylist(rows[k::4]), data / f"train-{k:05d}-of-00004.parquet")
    mb = sum(len(r["content"].encode()) for r in rows) / 1e6
    cfg = CodeFilesConfig(paths=(str(data),), partitions=8)
    folder = work / "prepare"
    reader = CodeFilesReader("s", cfg, Ledger("s"), work_dir=folder)
    map_s, _ = timed(lambda: reader.prepare(folder, 1).run_here())  # every map rank, then its finish
    reduce_s, _ = timed(lambda: sum(1 for _ in reader.read(0, 1)))
    return {"shuffle_map": mb / map_s, "shuffle_reduce": mb / reduce_s}


def _pack_write(ids: list[np.ndarray], work: Path) -> float:
    seq_len = 65536
    writer = SubsetWriter(work / "mds" / "00000", domain="bench", with_mask=False, compression="zstd",
                          size_limit=1 << 26)

    class Count:
        def kept(self, doc, **kw):
            pass

        def dropped(self, doc, reason, tokens):
            pass

    packer = make_packer("prolong", seq_len=seq_len, min_tokens=0, chunk_tokens=seq_len, acct=Count(),
                         with_mask=False)

    def run():
        n = 0
        for i, x in enumerate(ids):
            for row in packer.add(TokDoc(str(i), x)):
                writer.write(row)
                n += seq_len
        writer.finish()
        return n

    seconds, n = timed(run)
    return n / seconds


def _merge(work: Path) -> float:
    """Seconds to merge the index of a subset of 1,000 task parts (the finalize stage's unit)."""
    one = work / "mds" / "00000" / "index.json"
    subset = work / "merge"
    for k in range(1000):
        (subset / f"{k:05d}").mkdir(parents=True)
        shutil.copy(one, subset / f"{k:05d}" / "index.json")
    return timed(lambda: merge_subset(subset))[0]


def prolong_stages(r: dict[str, float]) -> list[Stage]:
    """The stages of recipes/prolong.yaml and their work at the measured rates: the Stack's
    repository partition, then every source's build tasks at once (one executor run), then
    finalize. `Stage.longest` bounds a stage by its longest task."""
    recipe = load_recipe(ROOT / "recipes" / "prolong.yaml")
    tok_s, pack_s = r["tokenize_tok_s"], r["pack_write_tok_s"]
    stack = next(s for s in recipe.sources if s.name.startswith("thestack"))
    map_tasks = min(stack.reader.partition_tasks(stack.tasks), STACK_FILES)  # as the build plans it
    map_s = STACK_BYTES / 1e6 / r["shuffle_map"]
    stages = [Stage("stack partition (map)", map_tasks, map_s, STACK_BYTES, map_s / map_tasks)]
    cpu_total = read_total = longest = 0.0
    tasks = 0
    for s in recipe.sources:
        budget = TOTAL_TOKENS * s.proportion
        subset = (getattr(s.reader, "where", None) or {}).get("meta.redpajama_set_name")
        if s is stack:  # group repositories until enough are long; tokenize each to know
            tokenized = budget / STACK_LONG_REPO_TOKEN_SHARE
            read = tokenized * r["bytes_per_token_code"]
            cpu = read / 1e6 / r["shuffle_reduce"] + tokenized / tok_s + budget / pack_s
        elif subset:  # SlimPajama's rows of a subset are found by decoding every row (jsonl.zst)
            read = SLIMPAJAMA_BYTES * budget / (SLIMPAJAMA_TOKENS * SLIMPAJAMA_SHARE[subset])
            cpu = read / 1e6 / r["read_jsonl_zst"] + budget / tok_s + budget / pack_s
        else:  # text read until the budget is met
            read = budget * r["bytes_per_token_text"]
            cpu = read / 1e6 / r["read_jsonl"] + budget / tok_s + budget / pack_s
        active = min(s.tasks, DATASET_PIECES.get(getattr(s.reader, "dataset", None), s.tasks))
        cpu_total, read_total, tasks = cpu_total + cpu, read_total + read, tasks + s.tasks
        longest = max(longest, cpu / active)
    stages.append(Stage("build tasks (every source at once)", tasks, cpu_total, read_total, longest))
    parts = sum(s.tasks * len(s.buckets) for s in recipe.sources)
    merge = r["merge_parts_s"] * parts / 1000
    stages.append(Stage("finalize (merge, manifest)", 1, merge, 0, merge))
    return stages


def wall(stage: Stage, nodes: int, launch_s: float = STAGE_LAUNCH_S) -> float:
    """Tasks of equal work run in waves of `cores`: 5,000 tasks on 2,048 cores take 3 task times,
    not 2.44; and never less than the stage's longest task."""
    cores = nodes * CORES_PER_NODE
    compute = max(math.ceil(stage.tasks / cores) * stage.core_seconds / stage.tasks, stage.longest)
    io_bound = stage.read_bytes / (min(nodes, stage.tasks) * NODE_READ_GBPS * 1e9)
    return launch_s + max(compute, io_bound)


def report(rates: dict[str, float], stages: list[Stage]) -> dict:
    print("rates on one core (demo corpus):")
    for k, v in rates.items():
        unit = "tokens/s" if k.endswith("tok_s") else ("s per 1,000 parts" if k == "merge_parts_s" else
                                                       ("bytes/token" if k.startswith("bytes") else "MB/s"))
        print(f"  {k:<22} {v:12,.2f} {unit}")
    print("\nrecipes/prolong.yaml (20B tokens), stages in order:")
    print(f"  {'stage':<34} {'tasks':>6} {'core-h':>9}" + "".join(f" {f'{n} nodes':>11}" for n in NODES))
    totals = {n: 0.0 for n in NODES}
    for st in stages:
        walls = {n: wall(st, n) for n in NODES}
        for n in NODES:
            totals[n] += walls[n]
        print(f"  {st.name:<34} {st.tasks:>6} {st.core_seconds / 3600:>9,.0f}"
              + "".join(f" {_hours(walls[n]):>11}" for n in NODES))
    core_h = sum(s.core_seconds for s in stages) / 3600
    print(f"  {'total (stages one after another)':<34} {'':>6} {core_h:>9,.0f}"
          + "".join(f" {_hours(totals[n]):>11}" for n in NODES))
    for n in NODES:
        crit = max(stages, key=lambda s: wall(s, n))
        print(f"  critical path at {n:>3} nodes: {crit.name} ({_hours(wall(crit, n))} of {_hours(totals[n])})")
    ratio = totals[64] / totals[1]
    bare = sum(wall(s, 64, 0) for s in stages) / sum(wall(s, 1, 0) for s in stages)
    print(f"\nwall at 64 nodes / 1 node: {ratio:.4f} = 1/{1 / ratio:.0f}  goal <= 1/50  "
          f"{'met' if ratio <= 1 / 50 else 'MISSED'}")
    print(f"  without the {STAGE_LAUNCH_S:.0f} s launch per stage: {bare:.4f} = 1/{1 / bare:.0f} (the work itself "
          "scales; at 64 nodes the fixed latency of three stages is most of the wall time)")
    return {"rates": rates, "core_hours": core_h, "wall_h": {n: totals[n] / 3600 for n in NODES}, "ratio_64_1": ratio,
            "ratio_64_1_without_launch": bare}


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.2f} h" if seconds >= 3600 else f"{seconds / 60:,.1f} min"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sample-mb", type=float, default=20)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mixcraft-scale-"))
    try:
        rates = measure(args.sample_mb, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = report(rates, prolong_stages(rates))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print("\n" + yaml.safe_dump({"tasks per source in prolong.yaml": {
        s.name: s.tasks for s in load_recipe(ROOT / "recipes" / "prolong.yaml").sources}}, sort_keys=False))


if __name__ == "__main__":
    main()
