"""datatrove's MinHash signature of a text, bit for bit, about 9x faster and in bounded memory.

datatrove (`MinhashDedupSignature`) simplifies the text (`simplify_text`), splits it into
words with spaCy's English tokenizer, hashes every word n-gram with xxhash64 and takes, for
each of num_buckets x hashes_per_bucket universal hash permutations, the minimum. Measured on
the demo's dedup sources (21 MB, 531 documents), spaCy took 90 % of that time: datatrove
tokenizes inside a spaCy `memory_zone`, so every document re-creates its vocabulary.

The same result, faster:
- spaCy splits a text at each space and tokenizes each space-free chunk on its own (its own
  cache is keyed by chunk), so the words of a text are the concatenated words of its chunks. A
  `WordCache` tokenizes each distinct chunk once, many per spaCy call, and remembers the words;
  it is cleared at `CACHE_ENTRIES`, so it stays under 14 MB whatever the corpus. Most chunks
  need no spaCy call at all: a word of letters a-z that is not one of spaCy's special cases is
  its own single token.
- `simplify` is `simplify_text` with its two per-character Python loops done in C (whitespace:
  `str.split`; diacritics: one `str.translate`, and nothing at all for ASCII text).
- the minimum is taken over chunks of `SHINGLE_CHUNK` shingles, so a long document never
  builds a (shingles x 112) matrix: 170,000 shingles per MB of English here, so 1.5 GB for a
  10 MB repository.
tests/curate/test_minhash.py checks each against datatrove's own function on real text.
"""

from __future__ import annotations

# datatrove's dependency check calls importlib.metadata without importing it; in a process
# that has not imported it yet the word tokenizer fails with an AttributeError.
import importlib.metadata  # noqa: F401
import unicodedata
from dataclasses import replace
from itertools import chain
from pathlib import Path

import numpy as np

from mixcraft.core.recipe import MinhashParams

# Shingles permuted at once: 1024 x 112 uint64 = 0.9 MB stays in cache; 4096 rows (3.7 MB)
# measured 3x slower per shingle here.
SHINGLE_CHUNK = 1024
CACHE_ENTRIES = 100_000  # distinct chunks remembered, 140 bytes each: the demo's 21 MB have 55,000


def hash_config():
    """datatrove's default hash (xxhash64). Make it once per build: its constructor checks that
    xxhash is installed by reading every installed package's metadata (0.45 s here)."""
    from datatrove.utils.hashing import HashConfig

    return HashConfig()


def datatrove_config(cfg: MinhashParams, hashes=None):
    """datatrove's MinhashConfig for these parameters."""
    from datatrove.pipeline.dedup.minhash import MinhashConfig

    return MinhashConfig(n_grams=cfg.n_grams, num_buckets=cfg.num_buckets, hashes_per_bucket=cfg.hashes_per_bucket,
                         seed=cfg.seed, hash_config=hashes or hash_config())


def warm_tokenizer():
    """datatrove's English word tokenizer, loaded once per process (it is cached), so tasks forked
    after this call inherit it. spaCy is imported without torch, unless torch is already in:
    spaCy's thinc imports torch when it can (measured: 3.8 s and 560 MiB, against 1.7 s and
    99 MiB without), and tokenizing needs none of it."""
    import sys

    from datatrove.utils.typeshelper import Languages
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    if "spacy" not in sys.modules and "torch" not in sys.modules:
        sys.modules["torch"] = None  # `import torch` raises ImportError: thinc goes without
        try:
            import spacy  # noqa: F401
        finally:
            del sys.modules["torch"]
    tokenizer = load_word_tokenizer(Languages.english)
    _ = tokenizer.tokenizer  # builds the spaCy pipeline
    return tokenizer


def simplify(text: str, norm) -> str:
    """datatrove's `simplify_text(text, norm)`, the same string (see the module doc)."""
    from datatrove.utils.text import simplify_text

    text = simplify_text(text, replace(norm, norm_whitespace=False, norm_unicode_diacritics=False))
    if norm.norm_whitespace:
        text = " ".join(text.split())  # str.split and re's \s share one definition of whitespace
    if norm.norm_unicode_diacritics and not text.isascii():
        text = unicodedata.normalize("NFD", text)
        marks = {ord(c): None for c in set(text) if unicodedata.category(c) == "Mn"}
        text = text.translate(marks)
    return text.strip()


class WordCache:
    """datatrove's spaCy word tokenization of simplified text, memoized per space-free chunk."""

    def __init__(self, nlp, max_entries: int = CACHE_ENTRIES):
        self.nlp, self.max_entries = nlp, max_entries
        self.words_of: dict[str, tuple[str, ...]] = {}
        # spaCy's special cases ("cannot" -> "can", "not"): the only way it splits a chunk of
        # letters a-z, which no prefix, suffix or infix rule matches (they all need a digit or
        # punctuation). 99.96 % of the demo's distinct chunks are such words.
        self.special = frozenset(nlp.tokenizer.rules)

    def words(self, simplified: str) -> list[str]:
        chunks = simplified.split(" ")
        new = [c for c in dict.fromkeys(chunks) if c and c not in self.words_of]
        if new:
            if len(self.words_of) + len(new) > self.max_entries:
                self.words_of.clear()
                new = [c for c in dict.fromkeys(chunks) if c]
            self._learn(new)
        return list(chain.from_iterable(map(self.words_of.__getitem__, filter(None, chunks))))

    def _learn(self, chunks: list[str]) -> None:
        hard = []
        for c in chunks:
            if c.isascii() and c.isalpha() and c.islower() and c not in self.special:
                self.words_of[c] = (c,)
            else:
                hard.append(c)
        if hard:
            self._learn_from_spacy(hard)

    def _learn_from_spacy(self, chunks: list[str]) -> None:
        groups = self._tokenize(" ".join(chunks))
        if len(groups) != len(chunks):  # spaCy split a chunk at a character it treats as a space
            groups = [[w for g in self._tokenize(c) for w in g] for c in chunks]
        for chunk, words in zip(chunks, groups, strict=True):
            self.words_of[chunk] = tuple(w.strip() for w in words if w.strip())  # datatrove's strip_strings

    def _tokenize(self, text: str) -> list[list[str]]:
        """spaCy's tokens of `text`, grouped by the space that ends them."""
        groups, current = [], []
        with self.nlp.memory_zone():  # as datatrove: the lexemes it creates are freed after
            for tok in self.nlp.tokenizer(text):
                current.append(tok.text)
                if tok.whitespace_:
                    groups.append(current)
                    current = []
        groups.append(current)
        return groups


class MinHasher:
    """datatrove's MinHash signature of a text (see the module doc)."""

    def __init__(self, config, scratch: Path):
        """`config`: datatrove's MinhashConfig (`datatrove_config`)."""
        from datatrove.pipeline.dedup.minhash import MinhashDedupSignature

        warm_tokenizer()
        self.step = MinhashDedupSignature(output_folder=str(scratch), config=config)
        self.config = config
        self.words = WordCache(self.step.word_tokenizer.tokenizer)
        self.hash_text = _unwrapped(self.step._hash_func)

    def shingles(self, text: str) -> np.ndarray:
        """The hashed word n-grams of the text, as `MinhashDedupSignature.get_shingles` (flat)."""
        words = self.words.words(simplify(text, self.config.norm_config))
        n = self.config.n_grams
        count = len(words) - n + 1
        if count <= 0:
            return np.zeros(0, dtype=np.uint64)
        hash_text = self.hash_text
        grams = zip(*(words[i:] for i in range(n)), strict=False)  # the shorter tails end it
        return np.fromiter((hash_text(" ".join(g)) for g in grams), dtype=np.uint64, count=count)

    def signature(self, text: str) -> np.ndarray | None:
        """(num_buckets, hashes_per_bucket) minimum hashes; None for a text with no n-gram."""
        from datatrove.pipeline.dedup.minhash import _mersenne_prime

        shingles = self.shingles(text).reshape(-1, 1)
        if shingles.size == 0:
            return None
        a, b = self.step.parameters
        mins = np.full(a.shape[1], np.iinfo(np.uint64).max, dtype=np.uint64)
        for start in range(0, len(shingles), SHINGLE_CHUNK):
            phv = (shingles[start:start + SHINGLE_CHUNK] * a + b) % _mersenne_prime
            np.minimum(mins, phv.min(axis=0), out=mins)
        # mixcraft keeps datatrove's default 64-bit hashes (MinhashParams has no precision key).
        return mins.reshape(self.config.num_buckets, -1)


def _unwrapped(hash_func):
    """datatrove's xxhash64 is a Python wrapper around xxhash's C function: call that directly
    (3.7M calls on the demo's dedup sources)."""
    import xxhash
    from datatrove.utils.hashes.xxhash import xxhash64

    return xxhash.xxh64_intdigest if hash_func is xxhash64 else hash_func

