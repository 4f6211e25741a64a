"""Session fixtures for the evaluation tests (helpers in eval_fixtures.py, a unique module name)."""

from __future__ import annotations

from pathlib import Path

import pytest
from eval_fixtures import train_tokenizer, write_build


@pytest.fixture(scope="session")
def tiny_tok(tmp_path_factory):
    return train_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json")


@pytest.fixture(scope="session")
def build(tmp_path_factory, tiny_tok) -> Path:
    """Two sources of prose, 6 rows x 256 tokens each, no validation split."""
    return write_build(tmp_path_factory.mktemp("build") / "out", tiny_tok)


@pytest.fixture(scope="session")
def build_with_val(tmp_path_factory, tiny_tok) -> Path:
    return write_build(tmp_path_factory.mktemp("build_val") / "out", tiny_tok, validation=True)
