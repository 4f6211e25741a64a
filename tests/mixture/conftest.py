"""Shared fixtures: the corpus, and one small build with every mixture knob, made once."""

from __future__ import annotations

from pathlib import Path

import pytest
from mixture_corpus import build_recipe, make_corpus, source, write_recipe

SEQ_LEN = 1024
TOTAL_TOKENS = 120_000


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def knobs_recipe(corpus: dict[str, Path]) -> dict:
    """Code; books capped by max_tokens; a book too thin for its budget even read twice
    (repeat 2); a short group of docstrings downsampled to half (repeat 0.5) and chats; and a
    pre-mixed stream."""
    long_bucket = [{"min_tokens": SEQ_LEN, "chunk_tokens": SEQ_LEN}]
    return {
        "name": "knobs", "seed": 11, "seq_len": SEQ_LEN, "total_tokens": TOTAL_TOKENS,
        "output": {"premix": True}, "groups": {"short": 0.4},
        "sources": [
            source("code", "code_repos", corpus["code"], buckets=long_bucket, proportion=0.25, tasks=2),
            source("books", "books", corpus["books"], buckets=long_bucket, proportion=0.2, max_tokens=15_000),
            source("thin", "books", corpus["thin"], buckets=long_bucket, proportion=0.15, repeat=2),
            source("docs", "text", corpus["short"], group="short", proportion=0.75, repeat=0.5),
            source("chat", "chat", corpus["chat"], group="short", proportion=0.25),
        ],
    }


@pytest.fixture(scope="session")
def knobs_build(corpus, tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("knobs")
    recipe = write_recipe(root / "knobs.yaml", knobs_recipe(corpus))
    out = root / "out"
    return out, build_recipe(recipe, out)


def layout_recipe(corpus: dict[str, Path]) -> dict:
    """Budgets the corpus can meet, with ProLong's stage-2 layout scaled down: one source with
    a bucket of whole-row chunks and a bucket of 256-token chunks, four to a row."""
    return {
        "name": "layout", "seed": 5, "seq_len": SEQ_LEN, "total_tokens": 200_000, "groups": {"short": 0.55},
        "output": {"premix": True},
        "sources": [
            source("topics", "text", corpus["topics"], buckets=[
                {"name": "1024", "min_tokens": 1024, "chunk_tokens": 1024, "proportion": 0.2},
                {"name": "256x4", "min_tokens": 256, "chunk_tokens": 256, "proportion": 0.03}]),
            source("code", "code_repos", corpus["code"], buckets=[{"min_tokens": SEQ_LEN}], proportion=0.22),
            source("docs", "text", corpus["short"], group="short", proportion=0.6),
            source("chat", "chat", corpus["chat"], group="short", proportion=0.4),
        ],
    }


@pytest.fixture(scope="session")
def layout_build(corpus, tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("layout")
    out = root / "out"
    return out, build_recipe(write_recipe(root / "layout.yaml", layout_recipe(corpus)), out)


@pytest.fixture()
def mixcraft(capsys):
    """`mixcraft ARGS` in this process: (exit code, stdout, stderr)."""
    from mixture_corpus import run_main

    return lambda *args: run_main(list(args), capsys)
