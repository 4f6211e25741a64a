"""Fixtures for the build tests: a small real corpus from the running Python's standard library
(always on disk), a recipe over it that exercises every packing mode and a length bucket, and
a reference build that every other build must match byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from buildhelp import REPOS, SHORT, STDLIB, copy_py, output_hashes, write_recipe


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for pkg in REPOS:
        copy_py(STDLIB / pkg, root / "repos" / pkg)
    with open(root / "short.jsonl", "w") as f:
        for pkg in SHORT:
            for p in sorted((STDLIB / pkg).rglob("*.py")):
                if "__pycache__" not in p.parts:
                    rel = str(p.relative_to(STDLIB))
                    f.write(json.dumps({"id": rel, "text": p.read_text(encoding="utf-8", errors="replace")}) + "\n")
    return root


@pytest.fixture(scope="session")
def recipe_path(corpus, tmp_path_factory) -> Path:
    return write_recipe(tmp_path_factory.mktemp("recipe") / "tiny.yaml", corpus)


@pytest.fixture(scope="session")
def reference(recipe_path, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """An uninterrupted local build with 2 workers: the bytes every other build must match."""
    from mixcraft.build.load import load_recipe
    from mixcraft.build.run import BuildOptions, build

    out = tmp_path_factory.mktemp("ref") / "out"
    build(load_recipe(recipe_path), out, BuildOptions(workers=2, show_progress=False))
    hashes = output_hashes(out)
    assert sum(k.endswith(".mds.zstd") for k in hashes) >= 8, "reference build wrote too few shards"
    return out, hashes
