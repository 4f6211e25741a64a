"""Helpers shared by the packing tests (imported by name: tests/ has no packages)."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np

from mixcraft.core.pack import TokDoc

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


class Ledgerish:
    """An `Account` recording each document's verdict exactly once (a second is a bug)."""

    def __init__(self):
        self.kept_docs: dict[str, dict] = {}
        self.dropped_docs: dict[str, tuple[str, int]] = {}

    def kept(self, doc, *, packed, tail, split):
        assert doc.doc_id not in self.kept_docs and doc.doc_id not in self.dropped_docs, f"{doc.doc_id} twice"
        self.kept_docs[doc.doc_id] = {"packed": packed, "tail": tail, "split": split}

    def dropped(self, doc, reason, tokens):
        assert doc.doc_id not in self.kept_docs and doc.doc_id not in self.dropped_docs, f"{doc.doc_id} twice"
        self.dropped_docs[doc.doc_id] = (reason, tokens)


def synthetic_docs(lengths, seed=0) -> list[TokDoc]:
    """Documents whose ids encode (document, position), so any misplaced token is detectable."""
    rng = np.random.default_rng(seed)
    docs = []
    for i, n in enumerate(lengths):
        ids = (np.arange(n, dtype=np.uint32) + rng.integers(0, 100_000)).astype(np.uint32)
        docs.append(TokDoc(f"d{i:05d}", ids))
    return docs
