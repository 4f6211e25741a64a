"""Helpers for the build tests (imported by name: tests/ has no packages): the corpus files,
the recipe over them, output hashes, the CLI environment."""

from __future__ import annotations

import hashlib
import shutil
import sysconfig
from pathlib import Path

import yaml

STDLIB = Path(sysconfig.get_paths()["stdlib"])
REPOS = ("json", "tomllib", "zoneinfo", "concurrent", "wsgiref", "html", "http", "urllib", "xmlrpc", "sqlite3",
         "dbm", "ctypes")
# encodings/ holds ~120 small codec modules: the small documents best-fit fills gaps with.
SHORT = ("email", "logging", "importlib", "multiprocessing", "encodings", "xml", "json")
REPO_ROOT = Path(__file__).resolve().parents[1]


def copy_py(src: Path, dst: Path) -> None:
    for f in sorted(src.rglob("*.py")):
        if "__pycache__" in f.parts or "test" in f.parts or "tests" in f.parts:
            continue
        out = dst / f.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, out)


def recipe_dict(corpus: Path, **overrides) -> dict:
    """4,096-token rows. code: whole repositories in two length buckets, >= 16K tokens cut into
    4K chunks, and 1K..16K cut into 1K chunks, four per row (the 512K-from-64K layout, scaled
    down). short: the same files packed three ways. Several tasks per source, so there is
    something to kill and resume."""
    recipe = {
        "name": "tiny", "seed": 7, "seq_len": 4096,
        "sources": [
            {"name": "code", "reader": {"type": "code_repos", "paths": [str(corpus / "repos")]},
             "buckets": [{"min_tokens": 16384, "chunk_tokens": 4096, "proportion": 0.25},
                         {"min_tokens": 1024, "chunk_tokens": 1024, "proportion": 0.15}], "tasks": 3},
            {"name": "short_bf", "reader": {"type": "text", "paths": [str(corpus / "short.jsonl")]},
             "packing": "best_fit", "proportion": 0.2, "tasks": 3},
            {"name": "short_prolong", "reader": {"type": "text", "paths": [str(corpus / "short.jsonl")]},
             "proportion": 0.2, "tasks": 2},
            {"name": "short_concat", "reader": {"type": "text", "paths": [str(corpus / "short.jsonl")]},
             "packing": "concat_chunk", "proportion": 0.2},
        ],
    }
    recipe.update(overrides)
    return recipe


def write_recipe(path: Path, corpus: Path, **overrides) -> Path:
    path.write_text(yaml.safe_dump(recipe_dict(corpus, **overrides), sort_keys=False))
    return path


def output_hashes(out: Path) -> dict[str, str]:
    """sha1 of every file a build writes: subsets (parts and merged index), manifest, resolved
    recipe. Skipped: the work folder, and the `.mds` copies that StreamingDataset decompresses
    next to each `.mds.zstd` shard when a test reads the subset."""
    hashes = {}
    for f in sorted(out.rglob("*")):
        rel = f.relative_to(out)
        cache = f.suffix == ".mds" and f.with_name(f.name + ".zstd").is_file()
        if f.is_file() and rel.parts[0] != ".mixcraft" and not cache:
            hashes[str(rel)] = hashlib.sha1(f.read_bytes()).hexdigest()
    return hashes


def cli_env() -> dict:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env
