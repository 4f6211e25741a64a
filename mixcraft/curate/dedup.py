"""Exact and MinHash near-duplicate removal across sources.

    dedup:
      exact: true                       # identical text (xxhash64 of the whole text)
      minhash: {threshold: 0.8}         # estimated Jaccard similarity of word 5-gram sets
      sources: [code_repos, books]      # optional; default every source

Why a pass before the tasks: a duplicate can sit in another source, read by another task in
another process. So `mixcraft build` first reads every deduplicated source once, in recipe
order (source, then task, then document), and keeps the first copy of each text; the later
copies get a verdict (`exact_duplicate` or `near_duplicate`, naming the kept copy) in
OUT/.mixcraft/dedup/<source>/<task>.json. The tasks then drop exactly those documents, by
their position in the task's read stream, and count them in the ledger. Positions are stable
because readers are deterministic and the pass applies the same `--limit`.

Dedup runs on documents as read, before the per-source filters: a duplicate is a duplicate
whatever its source's quality filters would say. (The kept copy can still be dropped later by
a filter of its own source; configure the same filters on sources that share text.)

MinHash uses datatrove's machinery: `MinhashConfig` (word n-grams, buckets x hashes per
bucket, seed), its text normalization, word tokenizer, shingle hashing and permutation
parameters (`MinhashDedupSignature`). The signature is computed over chunks of shingles so a
whole repository does not build a (shingles x hashes) matrix in memory. Candidates are found
by LSH (any equal bucket, as in datatrove), and a candidate is a duplicate when the fraction
of equal signature values, an unbiased estimate of Jaccard similarity, reaches `threshold`.
The index lives in memory, about 1 KB per document with the default 14 x 8 hashes: fine for
the long-document sources (millions of documents); for web-scale short sources run
datatrove's disk-based four-stage MinHash pipeline instead.
"""

from __future__ import annotations

# datatrove's dependency check calls importlib.metadata without importing it; in a process
# that has not imported it yet the word tokenizer fails with an AttributeError.
import importlib.metadata  # noqa: F401
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from datatrove.data import Document

from mixcraft.core.ledger import Ledger
from mixcraft.core.recipe import Dedup, MinhashParams

SHINGLE_CHUNK = 4096  # shingles hashed at once: 4096 x 112 uint64 = 3.7 MB of scratch


class MinHasher:
    """datatrove's MinHash signature of a text, computed in bounded memory."""

    def __init__(self, cfg: MinhashParams, scratch: Path):
        from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

        config = MinhashConfig(n_grams=cfg.n_grams, num_buckets=cfg.num_buckets,
                               hashes_per_bucket=cfg.hashes_per_bucket, seed=cfg.seed)
        self.step = MinhashDedupSignature(output_folder=str(scratch), config=config)
        self.config = config

    def signature(self, text: str) -> np.ndarray | None:
        """(num_buckets, hashes_per_bucket) minimum hashes; None for a text with no n-gram."""
        from datatrove.pipeline.dedup.minhash import _mersenne_prime

        shingles = self.step.get_shingles(text)
        if shingles.size == 0:
            return None
        a, b = self.step.parameters
        mins = np.full(a.shape[1], np.iinfo(np.uint64).max, dtype=np.uint64)
        for start in range(0, len(shingles), SHINGLE_CHUNK):
            phv = (shingles[start:start + SHINGLE_CHUNK] * a + b) % _mersenne_prime
            np.minimum(mins, phv.min(axis=0), out=mins)
        if self.config.hash_config.precision == 32:
            mins = np.bitwise_and(mins, self.config.hash_config.max)
        return mins.astype(self.config.hash_config.np_dtype).reshape(self.config.num_buckets, -1)


class DedupIndex:
    """First-seen wins. `check(doc)` returns None for a new text, else (reason, id of the kept copy)."""

    def __init__(self, cfg: Dedup, scratch: Path):
        from datatrove.utils.hashing import HashConfig, create_hash_func

        self.exact = cfg.exact
        self.hash_text = create_hash_func(HashConfig(), str)  # xxhash64, as datatrove's exact dedup
        self.texts: dict[int, str] = {}
        self.minhash = MinHasher(cfg.minhash, scratch) if cfg.minhash else None
        self.threshold = cfg.minhash.threshold if cfg.minhash else None
        self.sigs: list[np.ndarray] = []
        self.sig_ids: list[str] = []
        self.bands: list[dict[bytes, list[int]]] = [{} for _ in range(cfg.minhash.num_buckets)] if cfg.minhash else []

    def check(self, doc_key: str, text: str) -> tuple[str, str] | None:
        if self.exact:
            h = self.hash_text(text)
            if h in self.texts:
                return "exact_duplicate", self.texts[h]
            self.texts[h] = doc_key
        if self.minhash is None:
            return None
        sig = self.minhash.signature(text)
        if sig is None:
            return None
        candidates = {i for band, table in zip(sig, self.bands, strict=True) for i in table.get(band.tobytes(), ())}
        for i in sorted(candidates):
            if float(np.mean(self.sigs[i] == sig)) >= self.threshold:
                return "near_duplicate", self.sig_ids[i]
        n = len(self.sigs)
        self.sigs.append(sig)
        self.sig_ids.append(doc_key)
        for band, table in zip(sig, self.bands, strict=True):
            table.setdefault(band.tobytes(), []).append(n)
        return None


def load_verdicts(path: Path) -> dict[int, tuple[str, str]]:
    """A task's dedup verdicts (position in its read stream -> (reason, id of the kept copy))."""
    if not path.is_file():
        return {}
    return {int(k): tuple(v) for k, v in json.loads(path.read_text()).items()}


def drop_duplicates(docs: Iterable[Document], verdicts: dict[int, tuple[str, str]], ledger: Ledger
                    ) -> Iterator[Document]:
    """Drop the documents the dedup pass found to be later copies (`exact_duplicate`,
    `near_duplicate`); the position in the read stream identifies them."""
    for ordinal, doc in enumerate(docs):
        verdict = verdicts.get(ordinal)
        if verdict is not None:
            reason, kept = verdict
            ledger.drop(reason, where=f"{doc.id} (copy of {kept})", text=doc.text)
            continue
        yield doc
