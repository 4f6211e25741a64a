"""Reading a hub-style dataset over tasks: by data file (this branch) against main's
`split_dataset_by_node` streaming, with and without a `where` subset.

    python benchmarks/hub_reads.py [--files 10] [--tasks 3] [--rows 2000] [--main /work/main]

Writes a folder laid out like a hub dataset repository (data/train-*.parquet, SlimPajama's
nested `meta.redpajama_set_name`, four subsets in sorted runs as SlimPajama's chunks hold them,
about 2 KB of random text per row) whose file count is not a multiple of the task count. Every
task of each reader runs in its own fresh process; reported per reader: the rows every task
yielded, the total CPU seconds of all tasks, and (this branch) the bytes the tasks read, against
the dataset's size. Main is measured when `--main` points at a checkout of it.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import string
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETS = ["RedPajamaBook", "RedPajamaC4", "RedPajamaCommonCrawl", "RedPajamaWikipedia"]

CHILD = """
import json, resource, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from helpers import reader_config
from mixcraft.core.ledger import Ledger
from mixcraft.readers import make_reader
counted = {{"bytes": 0}}
try:
    import mixcraft.core.records as records
    real = records.open_raw
    class Counted:
        def __init__(self, f): self.f = f
        def read(self, *a):
            d = self.f.read(*a); counted["bytes"] += len(d); return d
        def readline(self, *a):
            d = self.f.readline(*a); counted["bytes"] += len(d); return d
        def __enter__(self): return self
        def __exit__(self, *e): self.f.close()
        def __getattr__(self, k): return getattr(self.f, k)
    records.open_raw = lambda p: Counted(real(p))
except AttributeError:  # main has no single opener; its bytes are not counted
    counted["bytes"] = None
cfg = reader_config({cfg!r})
work = Path({work!r})
reader = make_reader("s", cfg, Ledger("s"), work_dir=work)
if {task} == 0 and hasattr(reader, "prepare"):
    reader.prepare(work, {n_tasks})
n = sum(1 for _ in reader.read({task}, {n_tasks}))
u = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"rows": n, "cpu": u.ru_utime + u.ru_stime, "bytes": counted["bytes"]}}))
"""


def write_dataset(root: Path, n_files: int, rows_per_file: int) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(0)
    (root / "data").mkdir(parents=True)
    total = n_files * rows_per_file
    for f in range(n_files):
        rows = []
        for r in range(rows_per_file):
            i = f * rows_per_file + r
            rows.append({"id": f"r{i}", "text": "".join(rng.choices(string.ascii_letters + "     ", k=2000)),
                         "meta": {"redpajama_set_name": SETS[(i * len(SETS)) // total]}})
        pq.write_table(pa.Table.from_pylist(rows), root / "data" / f"train-{f:05d}-of-{n_files:05d}.parquet",
                       row_group_size=250)
    return sum(p.stat().st_size for p in (root / "data").glob("*.parquet"))


def run_reader(code_root: Path, cfg: dict, n_tasks: int, work: Path) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    tasks = []
    for task in range(n_tasks):
        code = CHILD.format(tests=str(ROOT / "tests"), cfg=cfg, work=str(work), task=task, n_tasks=n_tasks)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=code_root,
                             env={"PYTHONPATH": str(code_root), "PATH": "/usr/bin:/bin", "HF_DATASETS_OFFLINE": "1"})
        if out.returncode != 0:
            raise SystemExit(out.stderr[-3000:])
        tasks.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"rows": [t["rows"] for t in tasks], "cpu": sum(t["cpu"] for t in tasks),
            "bytes": None if tasks[0]["bytes"] is None else sum(t["bytes"] for t in tasks)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--tasks", type=int, default=3)
    ap.add_argument("--rows", type=int, default=2000, help="rows per file")
    ap.add_argument("--main", type=Path, default=None)
    args = ap.parse_args()
    top = Path(tempfile.mkdtemp(prefix="mixcraft-hub-"))
    try:
        size = write_dataset(top / "hub", args.files, args.rows)
        print(f"{args.files} Parquet files, {args.files * args.rows:,} rows, {size / 1e6:.0f} MB; {args.tasks} tasks")
        for label, where in (("all rows", {}), ("where books (1/4)", {"meta.redpajama_set_name": "RedPajamaBook"})):
            cfg = {"type": "hf", "dataset": str(top / "hub"), **({"where": where} if where else {})}
            ours = run_reader(ROOT, cfg, args.tasks, top / "work")
            line = (f"{label:<18} by file: rows per task {ours['rows']}, {ours['cpu']:.1f} CPU s, "
                    f"read {ours['bytes'] / size:.2f}x the dataset")
            if args.main is not None:
                theirs = run_reader(args.main.resolve(), cfg, args.tasks, top / "work-main")
                assert sum(theirs["rows"]) == sum(ours["rows"]), (theirs, ours)
                line += (f" | main: rows per task {theirs['rows']}, {theirs['cpu']:.1f} CPU s"
                         f" | CPU main / by file: {theirs['cpu'] / ours['cpu']:.2f}x")
            print(line)
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
