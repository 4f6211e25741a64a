"""One small build for the inspect and verify tests: greedily packed docstrings (many document
boundaries per row), chats with a loss mask, and a pre-mixed stream."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


def _corpus_module():
    """tests/mixture/mixture_corpus.py, shared with the mixture tests."""
    if "mixture_corpus" in sys.modules:
        return sys.modules["mixture_corpus"]
    spec = importlib.util.spec_from_file_location(
        "mixture_corpus", Path(__file__).resolve().parents[1] / "mixture" / "mixture_corpus.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["mixture_corpus"] = module
    spec.loader.exec_module(module)
    return module


mc = _corpus_module()


@pytest.fixture(scope="session")
def small_build(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("inspect")
    corpus = mc.make_corpus(root / "corpus")
    recipe = mc.write_recipe(root / "small.yaml", {
        "name": "small", "seed": 1, "seq_len": 1024, "total_tokens": 24_000, "output": {"premix": True},
        "sources": [mc.source("docs", "text", corpus["short"], proportion=0.6),
                    mc.source("chat", "chat", corpus["chat"], proportion=0.4)]})
    out = root / "out"
    return out, mc.build_recipe(recipe, out)


@pytest.fixture()
def run_cli(capsys):
    """`mixcraft ARGS` in this process; returns (returncode, stdout, stderr) like a subprocess."""
    from types import SimpleNamespace

    def run(*args) -> SimpleNamespace:
        code, out, err = mc.run_main(list(args), capsys)
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return run


@pytest.fixture()
def spawn_cli():
    """`mixcraft ARGS` as a real subprocess, as a user runs it."""
    import subprocess

    def run(*args) -> subprocess.CompletedProcess:
        return subprocess.run(mc.cli(*map(str, args)), capture_output=True, text=True, env=mc.cli_env())

    return run
