"""Fixtures for packing and tokenization tests: real text from the running Python's standard
library (always on disk, FACTS.md §2), tokenized once per session with the real Llama-3 tokenizer."""

from __future__ import annotations

import pytest
from packhelp import Ledgerish, stdlib_texts

from mixcraft.core.pack import TokDoc


@pytest.fixture(scope="session")
def tok():
    from mixcraft.core.tokenize import load_tokenizer

    return load_tokenizer("llama3")


@pytest.fixture(scope="session")
def stdlib_docs(tok) -> list[TokDoc]:
    """Each stdlib file of PACKAGES as one tokenized document (a real length distribution)."""
    docs = [TokDoc(path, tok.encode(text)) for path, text in stdlib_texts()]
    return [d for d in docs if len(d.ids)]


@pytest.fixture
def account():
    return Ledgerish()
