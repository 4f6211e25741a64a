"""Helpers shared by the tests (importable as `helpers`: pyproject puts tests/ on sys.path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STDLIB = Path(sysconfig.get_paths()["stdlib"])


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: object, check: bool = False) -> CliResult:
    """`mixcraft ARGS` in this process (typer's CliRunner): exit code, stdout, stderr. Saves the
    seconds a subprocess spends importing; use `spawn_cli` where the process itself is under test."""
    from typer.testing import CliRunner

    from mixcraft.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    out = CliResult(result.exit_code, result.stdout, result.stderr)
    if check and out.returncode != 0:
        raise AssertionError(f"mixcraft {' '.join(map(str, args))} exited {out.returncode}\n{out.stdout}\n{out.stderr}")
    return out


def cli_env() -> dict[str, str]:
    """The environment for a CLI subprocess: this checkout's mixcraft first on the path."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def spawn_cli(*args: object, cwd: Path | None = None, check: bool = False, timeout: int = 600
              ) -> subprocess.CompletedProcess:
    """`python -m mixcraft ARGS` in a subprocess, importing this checkout's package."""
    proc = subprocess.run([sys.executable, "-m", "mixcraft", *map(str, args)], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"mixcraft {' '.join(map(str, args))} exited {proc.returncode}\n{proc.stdout}\n"
                             f"{proc.stderr}")
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


def reader_config(cfg: dict, base: Path = Path("/")):
    """A reader's parameter dataclass from a recipe-style mapping (relative paths against `base`)."""
    from mixcraft.readers import READER_CONFIGS
    from mixcraft.schema import Where, parse

    return parse(READER_CONFIGS[cfg["type"]], cfg, Where("test.yaml", "reader", base))


def manifest_data(out: Path) -> dict:
    """OUT/manifest.json as plain JSON: the output contract other tools read."""
    return json.loads((out / "manifest.json").read_text())


def rewrite_manifest(out: Path, data: dict) -> None:
    """Write an edited manifest with a fresh content digest: a manifest that is consistent in
    itself but wrong about the shards (what verify's deeper checks must catch)."""
    from mixcraft.core.manifest import content_digest

    data = {**data, "content_sha256": content_digest(data)}
    (out / "manifest.json").write_text(json.dumps(data, indent=1) + "\n")
