"""Helpers shared by the tests (importable as `helpers`: pyproject puts tests/ on sys.path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STDLIB = Path(sysconfig.get_paths()["stdlib"])


def run_cli(*args: str, cwd: Path | None = None, check: bool = False, timeout: int = 600
            ) -> subprocess.CompletedProcess:
    """`python -m mixcraft ARGS` in a subprocess, importing this checkout's package."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "mixcraft", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"mixcraft {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def make_corpus(root: Path) -> dict[str, Path]:
    """Real text, small: two standard-library packages as repositories, a standard-library
    module as a book, and README-sized JSONL records (with one malformed line)."""
    import shutil

    repos = root / "repos"
    repos.mkdir(parents=True)
    for pkg in ("json", "wsgiref"):
        shutil.copytree(STDLIB / pkg, repos / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    books = root / "books"
    books.mkdir()
    (books / "difflib.txt").write_text((STDLIB / "difflib.py").read_text())
    (books / "tiny.txt").write_text("Too short to fill a chunk.\n")
    short = root / "short"
    short.mkdir()
    with open(short / "docs.jsonl", "w") as f:
        for path in sorted((STDLIB / "email").glob("*.py"))[:20]:
            f.write(json.dumps({"id": path.name, "text": path.read_text()[:3000]}) + "\n")
        f.write("{not json\n")
    return {"repos": repos, "books": books, "short": short}


TINY_RECIPE = """\
name: tiny
seed: 7
seq_len: 1024
sources:
  - name: code
    reader: {type: code_repos, paths: [repos]}
    buckets: [{min_tokens: 1024}]
    proportion: 0.4
  - name: books
    reader: {type: books, paths: [books]}
    buckets: [{min_tokens: 512, chunk_tokens: 512}]
    proportion: 0.2
  - name: short
    reader: {type: text, paths: [short]}
    filters: [{type: min_chars, value: 50}]
    proportion: 0.4
    tasks: 2
"""
