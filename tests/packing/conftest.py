"""Fixtures for packing and tokenization tests: real text from the running Python's standard
library (always on disk, FACTS.md §2), tokenized once per session with the real Llama-3 tokenizer."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
from packhelp import Ledgerish

from mixcraft.pack import TokDoc

STDLIB = Path(sysconfig.get_paths()["stdlib"])
# Packages with plain code, docstrings full of prose, and some non-ASCII (email, encodings).
PACKAGES = ("json", "email", "logging", "http", "asyncio", "concurrent", "importlib", "xml", "encodings",
            "unittest", "tomllib", "zoneinfo")


def stdlib_texts(packages=PACKAGES) -> list[tuple[str, str]]:
    """(relative path, text) of every .py file of `packages`, in a fixed order."""
    out = []
    for pkg in packages:
        for f in sorted((STDLIB / pkg).rglob("*.py")):
            if "__pycache__" not in f.parts:
                out.append((str(f.relative_to(STDLIB)), f.read_text(encoding="utf-8", errors="replace")))
    return out


@pytest.fixture(scope="session")
def tok():
    from mixcraft.tokenize import load_tokenizer

    return load_tokenizer("llama3")


@pytest.fixture(scope="session")
def stdlib_docs(tok) -> list[TokDoc]:
    """Each stdlib file of PACKAGES as one tokenized document (a real length distribution)."""
    docs = [TokDoc(path, tok.encode(text)) for path, text in stdlib_texts()]
    return [d for d in docs if len(d.ids)]


@pytest.fixture
def account():
    return Ledgerish()
