"""Helpers shared by the packing tests (imported by name: tests/ has no packages)."""

from __future__ import annotations

import numpy as np

from mixcraft.pack import TokDoc


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
