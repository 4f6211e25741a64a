"""Shared fixtures: the real Llama-3 tokenizer and a tiny real-text recipe."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import TINY_RECIPE, make_corpus


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
