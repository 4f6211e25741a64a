"""Peak memory of the code_files shuffle when its input doubles, against main's grouping.

    python benchmarks/shuffle_memory.py [--size-mb 150] [--main /work/main] [--dir /tmp]

Writes two Stack-v1-like datasets (a hub repository layout, The Stack's 13 columns, each
repository's rows scattered over 8 Parquet files) of `--size-mb` and twice that of file text,
with `partitions: 1`, the worst case for a reduce task: the whole dataset is one partition.
For each, in fresh child processes, it measures the peak RSS (VmHWM) and time of
  - one map task over every data file (this branch),
  - one reduce task over the partition, spilling sorted runs (this branch, the defaults),
  - the same reduce with an unbounded sort buffer (everything in memory, for contrast),
  - main's two passes (its prepare, then its task), when `--main` points at a checkout of it,
and checks that every variant yields the same documents (a digest of repo + text, in order).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

CHILD = """
import hashlib, json, sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
t = time.perf_counter()
from helpers import reader_config
from mixcraft.core.ledger import Ledger
from mixcraft.readers import make_reader
cfg = reader_config({cfg!r})
work = Path({work!r})
{setup}
if {phase!r} == "map":
    stage = make_reader("s", cfg, Ledger("s"), work_dir=work).prepare(work, 1)  # main runs its pass here
    if stage is not None:
        stage.run_here()
    digest, docs = "", 0
else:
    reader = make_reader("s", cfg, Ledger("s"), work_dir=work)
    h, docs = hashlib.sha256(), 0
    for d in reader.read(0, 1):
        h.update(d.metadata["repo"].encode() + b"\\0" + d.text.encode() + b"\\0")
        docs += 1
    digest = h.hexdigest()
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
import mixcraft
print(json.dumps({{"code": str(Path(mixcraft.__file__).parents[1]), "peak_mib": int(hwm) / 1024, "seconds": time.perf_counter() - t, "docs": docs,
                  "digest": digest}}))
"""


def child(code_root: Path, phase: str, cfg: dict, work: Path, setup: str = "") -> dict:
    """Run one phase in a fresh interpreter importing mixcraft from `code_root`."""
    code = CHILD.format(tests=str(ROOT / "tests"), cfg=cfg, work=str(work), phase=phase, setup=setup)
    # cwd = the code's own root: `python -c` puts the working folder first on sys.path.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=code_root,
                         env={"PYTHONPATH": str(code_root), "PATH": "/usr/bin:/bin"})
    if out.returncode != 0:
        raise SystemExit(f"{phase} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(result["code"]) == code_root.resolve(), f"imported {result['code']}, not {code_root}"
    return result


def measure(root: Path, data: Path, main: Path | None) -> dict[str, dict]:
    cfg = {"type": "code_files", "paths": [str(data)], "lang_field": "lang", "partitions": 1}
    results = {}
    work = root / "work"
    results["map"] = child(ROOT, "map", cfg, work)
    results["reduce"] = child(ROOT, "reduce", cfg, work)
    results["reduce_in_memory"] = child(ROOT, "reduce", cfg, work,
                                        "import mixcraft.readers.shuffle as sh; sh.SORT_BYTES = 1 << 50")
    if main is not None:
        main_work = root / "main-work"
        results["main_prepare"] = child(main, "map", cfg, main_work)
        results["main_task"] = child(main, "reduce", cfg, main_work)
    return results


def main() -> None:
    from readerhelp import write_stack_like

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=150)
    ap.add_argument("--main", type=Path, default=None, help="a checkout of main, to measure its grouping too")
    ap.add_argument("--dir", default=tempfile.gettempdir())
    args = ap.parse_args()
    top = Path(tempfile.mkdtemp(prefix="mixcraft-shuffle-", dir=args.dir))
    table = {}
    try:
        for scale in (1, 2):
            root = top / f"x{scale}"
            t = time.perf_counter()
            # 2,000 rows of 4 KB per repository-thousand: size_mb MB of file text.
            n_repos = int(args.size_mb * scale * 1e6 / (40 * 4000))
            rows = write_stack_like(root / "the-stack", n_repos=n_repos, files_per_repo=40, n_data_files=8,
                                    content_bytes=4000, extras=False)
            text_mb = sum(len(r["content"]) for r in rows) / 1e6
            disk_mb = sum(p.stat().st_size for p in (root / "the-stack").rglob("*.parquet")) / 1e6
            print(f"x{scale}: {n_repos:,} repositories, {len(rows):,} rows, {text_mb:.0f} MB of text, "
                  f"{disk_mb:.0f} MB of Parquet (written in {time.perf_counter() - t:.0f} s)")
            table[scale] = measure(root, root / "the-stack" / "data", args.main)
            table[scale]["text_mb"] = text_mb
            shutil.rmtree(root)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    report(table)


def report(table: dict) -> None:
    print(f"\n{'phase':<18} {'peak x1 MiB':>12} {'peak x2 MiB':>12} {'x2/x1':>6} {'MB/s x2':>8}")
    for phase in [k for k in table[1] if k != "text_mb"]:
        a, b = table[1][phase], table[2][phase]
        rate = table[2]["text_mb"] / b["seconds"]
        print(f"{phase:<18} {a['peak_mib']:>12.0f} {b['peak_mib']:>12.0f} {b['peak_mib'] / a['peak_mib']:>6.2f} "
              f"{rate:>8.1f}")
    for scale in (1, 2):
        digests = {k: v["digest"] for k, v in table[scale].items() if isinstance(v, dict) and v.get("digest")}
        same = len(set(digests.values())) == 1
        print(f"x{scale}: the same {table[scale]['reduce']['docs']:,} documents in the same order from "
              f"{', '.join(digests)}: {'yes' if same else 'NO'}")
        if not same:
            sys.exit(1)
    flat = table[2]["reduce"]["peak_mib"] / table[1]["reduce"]["peak_mib"]
    print(f"reduce peak x2/x1 = {flat:.2f} (goal: within 1.10)")
    sys.exit(0 if flat <= 1.10 else 1)


if __name__ == "__main__":
    main()
