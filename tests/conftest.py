"""Shared fixtures: the real Llama-3 tokenizer, tiny real-text corpora and recipes, and a few
small builds made once per session (every mixture knob; ProLong's stage-2 layout; greedily
packed documents and chats for inspect and verify)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mixcorpus import build_recipe, source, write_recipe
from mixcorpus import make_corpus as make_mix_corpus
from packhelp import Ledgerish, stdlib_texts

from helpers import TINY_RECIPE, make_corpus, manifest_data, run_cli, spawn_cli
from mixcraft.core.pack import TokDoc


@pytest.fixture(scope="session")
def tok():
    from mixcraft.core.tokenize import load_tokenizer

    return load_tokenizer("llama3")


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    make_corpus(tmp_path)
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_RECIPE)
    return path


SEQ_LEN = 1024
TOTAL_TOKENS = 120_000


@pytest.fixture(scope="session")
def mix_corpus(tmp_path_factory) -> dict[str, Path]:
    return make_mix_corpus(tmp_path_factory.mktemp("corpus"))


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
def knobs_build(mix_corpus, tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("knobs")
    recipe = write_recipe(root / "knobs.yaml", knobs_recipe(mix_corpus))
    out = root / "out"
    build_recipe(recipe, out)
    return out, manifest_data(out)


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
def layout_build(mix_corpus, tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("layout")
    out = root / "out"
    build_recipe(write_recipe(root / "layout.yaml", layout_recipe(mix_corpus)), out)
    return out, manifest_data(out)


@pytest.fixture(scope="session")
def small_build(tmp_path_factory) -> tuple[Path, dict]:
    """Greedily packed docstrings (many document boundaries per row), chats with a loss mask,
    and a pre-mixed stream."""
    root = tmp_path_factory.mktemp("inspect")
    corpus = make_mix_corpus(root / "corpus")
    recipe = write_recipe(root / "small.yaml", {
        "name": "small", "seed": 1, "seq_len": 1024, "total_tokens": 24_000, "output": {"premix": True},
        "sources": [source("docs", "text", corpus["short"], proportion=0.6),
                    source("chat", "chat", corpus["chat"], proportion=0.4)]})
    out = root / "out"
    build_recipe(recipe, out)
    return out, manifest_data(out)


@pytest.fixture(scope="session")
def stdlib_docs(tok) -> list[TokDoc]:
    """Each stdlib file of packhelp.PACKAGES as one tokenized document (a real length distribution)."""
    docs = [TokDoc(path, tok.encode(text)) for path, text in stdlib_texts()]
    return [d for d in docs if len(d.ids)]


@pytest.fixture
def account():
    return Ledgerish()


@pytest.fixture
def mixcraft():
    """`mixcraft ARGS` in this process: (exit code, stdout, stderr)."""
    def run(*args):
        r = run_cli(*args)
        return r.returncode, r.stdout, r.stderr

    return run


@pytest.fixture(name="run_cli")
def run_cli_fixture():
    """`mixcraft ARGS` in this process; a result with returncode, stdout, stderr."""
    return run_cli


@pytest.fixture(name="spawn_cli")
def spawn_cli_fixture():
    """`mixcraft ARGS` as a real subprocess, as a user runs it."""
    return spawn_cli
