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
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from datatrove.data import Document

from mixcraft.core.ledger import Ledger

MINHASH_DEFAULTS = {"threshold": 0.8, "n_grams": 5, "num_buckets": 14, "hashes_per_bucket": 8, "seed": 1}
_DEDUP_KEYS = {"exact": bool, "minhash": dict, "sources": list}
_MINHASH_KEYS = {"threshold": (int, float), "n_grams": int, "num_buckets": int, "hashes_per_bucket": int,
                 "seed": int}
SHINGLE_CHUNK = 4096  # shingles hashed at once: 4096 x 112 uint64 = 3.7 MB of scratch


def check_dedup_config(ctx: Any, raw: Any, source_names: list[str]) -> dict[str, Any]:
    """The `dedup:` block with defaults filled in; mistakes are one-line errors."""
    from mixcraft.recipe import check_keys

    check_keys(ctx, "dedup", raw, _DEDUP_KEYS)
    out: dict[str, Any] = {"exact": raw.get("exact", True), "minhash": None,
                           "sources": raw.get("sources", list(source_names))}
    if "minhash" in raw:
        check_keys(ctx, "dedup.minhash", raw["minhash"], _MINHASH_KEYS)
        mh = {**MINHASH_DEFAULTS, **raw["minhash"]}
        if not 0 < mh["threshold"] <= 1:
            raise ctx.fail("dedup.minhash.threshold", f"{mh['threshold']} is not in (0, 1] (e.g. 0.8)")
        for key in ("n_grams", "num_buckets", "hashes_per_bucket"):
            if mh[key] < 1:
                raise ctx.fail(f"dedup.minhash.{key}", f"must be >= 1, got {mh[key]}")
        out["minhash"] = mh
    for i, name in enumerate(out["sources"]):
        if name not in source_names:
            raise ctx.fail(f"dedup.sources[{i}]", f"no source named {name!r} (have: {', '.join(source_names)})")
    if not out["exact"] and out["minhash"] is None:
        raise ctx.fail("dedup", "neither `exact: true` nor a `minhash:` block; remove `dedup:` or enable one")
    return out


class MinHasher:
    """datatrove's MinHash signature of a text, computed in bounded memory."""

    def __init__(self, cfg: dict[str, Any], scratch: Path):
        from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

        config = MinhashConfig(n_grams=cfg["n_grams"], num_buckets=cfg["num_buckets"],
                               hashes_per_bucket=cfg["hashes_per_bucket"], seed=cfg["seed"])
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

    def __init__(self, cfg: dict[str, Any], scratch: Path):
        from datatrove.utils.hashing import HashConfig, create_hash_func

        self.exact = cfg["exact"]
        self.hash_text = create_hash_func(HashConfig(), str)  # xxhash64, as datatrove's exact dedup
        self.texts: dict[int, str] = {}
        self.minhash = MinHasher(cfg["minhash"], scratch) if cfg["minhash"] else None
        self.threshold = cfg["minhash"]["threshold"] if cfg["minhash"] else None
        self.sigs: list[np.ndarray] = []
        self.sig_ids: list[str] = []
        self.bands: list[dict[bytes, list[int]]] = (
            [{} for _ in range(cfg["minhash"]["num_buckets"])] if cfg["minhash"] else [])

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


def run_dedup(recipe, work: Path, *, limit: int | None) -> None:
    """The pass before the tasks: verdicts for every later copy, per (source, task)."""
    from mixcraft.build.run import split_limit
    from mixcraft.build.prepare import prepare_dir
    from mixcraft.readers import make_reader
    from mixcraft.build.steps import take_docs

    cfg = recipe.dedup
    folder = work / "dedup"
    identity = {"recipe_sha256": recipe.digest(), "limit": limit}
    done = folder / "done.json"
    if done.is_file() and json.loads(done.read_text()) == identity:
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    index = DedupIndex(cfg, folder / "scratch")
    for source in recipe.sources:
        if source.name not in cfg["sources"]:
            continue
        for task in range(source.tasks):
            # A scratch ledger: the task itself counts every read and skip for real.
            reader = make_reader(source.name, source.reader, Ledger(source.name),
                                 work_dir=prepare_dir(work, source.name))
            reader.task_units(task, source.tasks)
            docs = take_docs(reader.read(task, source.tasks), split_limit(limit, task, source.tasks))
            verdicts = {}
            for ordinal, doc in enumerate(docs):
                verdict = index.check(f"{source.name}:{doc.id}", doc.text)
                if verdict:
                    verdicts[ordinal] = verdict
            path = folder / source.name / f"{task:05d}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({str(k): v for k, v in verdicts.items()}))
    done.write_text(json.dumps(identity))


def load_verdicts(work: Path, source: str, task: int) -> dict[int, tuple[str, str]]:
    path = work / "dedup" / source / f"{task:05d}.json"
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
