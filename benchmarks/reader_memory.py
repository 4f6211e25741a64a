"""Peak memory while streaming a large JSONL file through the text reader.

    python benchmarks/reader_memory.py [--size-gb 2] [--dir /tmp]

Writes a JSONL file of `--size-gb` GB (records of about 2 KB of real English prose from the
Python language reference, plus a few 64 MB lines that the reader must skip without holding
them), then reads it in a child process with the `text` reader exactly as a build task does
(counting every record in a ledger) and reports the child's peak RSS against the goal of
1 GB. The file is deleted afterwards.
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

LIMIT_BYTES = 1 << 30  # the goal: under 1 GiB while streaming
HUGE_LINE_BYTES = 64 << 20


def write_corpus(path: Path, size_bytes: int) -> int:
    from pydoc_data.topics import topics

    prose = " ".join(topics[k] for k in sorted(topics))
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        written = 0
        while written < size_bytes:
            n += 1
            if n % 200_000 == 100_000:  # a 64 MB single-line record now and then, written in pieces
                f.write(f'{{"id": "huge{n}", "text": "')
                for _ in range(HUGE_LINE_BYTES >> 20):
                    f.write("x" * (1 << 20))
                f.write('"}\n')
                written += HUGE_LINE_BYTES
                continue
            start = (n * 997) % (len(prose) - 2000)
            line = json.dumps({"id": f"d{n}", "text": prose[start:start + 2000]}) + "\n"
            f.write(line)
            written += len(line)
    return n


def read_in_child(path: Path) -> dict:
    """Run the reader in a fresh process, so its peak RSS is the reader's alone."""
    code = f"""
import json, resource, time

def peak_rss():
    # VmHWM is this process's own high-water mark; ru_maxrss would also carry the parent's
    # peak across fork+exec on Linux.
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

from mixcraft.core.ledger import Ledger
from mixcraft.readers import make_reader
from mixcraft.readers.text import TextConfig
t = time.perf_counter()
ledger = Ledger("bench")
reader = make_reader("bench", TextConfig(paths=({str(path)!r},)), ledger)
reader.task_units(0, 1)
chars = sum(len(doc.text) for doc in reader.read(0, 1))
print(json.dumps({{"docs": ledger.docs_read, "kept_chars": chars, "dropped": dict(ledger.docs_dropped),
                  "seconds": time.perf_counter() - t,
                  "peak_rss_bytes": peak_rss()}}))
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gb", type=float, default=2.0)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    args = ap.parse_args()
    path = Path(args.dir) / f"mixcraft-reader-memory-{os.getpid()}.jsonl"
    try:
        t = time.perf_counter()
        lines = write_corpus(path, int(args.size_gb * 1e9))
        size = path.stat().st_size
        print(f"wrote {size / 1e9:.2f} GB, {lines:,} lines in {time.perf_counter() - t:.1f} s")
        r = read_in_child(path)
    finally:
        path.unlink(missing_ok=True)
    peak = r["peak_rss_bytes"]
    print(f"read {r['docs']:,} records ({r['dropped']}) in {r['seconds']:.1f} s "
          f"= {size / r['seconds'] / 1e6:.0f} MB/s")
    print(f"peak RSS {peak / 2**20:.0f} MiB = {peak / LIMIT_BYTES:.2f} x the 1 GiB limit "
          f"({size / peak:.1f} x smaller than the file)")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(this driver process peaked at {own:.0f} MiB while writing the file)")
    sys.exit(0 if peak < LIMIT_BYTES else 1)


if __name__ == "__main__":
    main()
