"""Haystacks: long filler text to hide needles in, from the build's own documents.

The haystack is a pool of token ids (document pieces of the build, joined by a blank line);
a sample takes a window of it at a seeded offset, wrapping around when the pool is shorter
than the context. Needles are spliced in as token ids at a depth (0 = the start of the
haystack, 1 = its end), moved to the nearest line break within a few dozen tokens so a
needle reads as its own line, as RULER's sentence-aligned insertion does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

# RULER's "noise" haystack (Hsieh et al. 2024), for a run without --data.
NOISE_TEXT = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.\n"
SNAP_TOKENS = 48  # how far a needle may move to land on a line break


class Tokenizer(Protocol):
    def encode(self, text: str) -> np.ndarray: ...

    def decode(self, ids: Sequence[int]) -> str: ...


def encode(tok: Tokenizer, text: str) -> np.ndarray:
    return np.asarray(tok.encode(text), dtype=np.int64)


class Haystack:
    """A token pool and the means to cut context windows from it and hide needles in them."""

    def __init__(self, tok: Tokenizer, pieces: list[np.ndarray], *, origin: str):
        sep = encode(tok, "\n\n")
        parts: list[np.ndarray] = []
        for piece in pieces:
            parts += [np.asarray(piece, dtype=np.int64), sep]
        if not parts:
            parts = [encode(tok, NOISE_TEXT * 64)]
            origin = "noise (RULER's repeated sentences)"
        self.pool = np.concatenate(parts)
        self.origin = origin
        self.tok = tok
        self._newline: dict[int, bool] = {}

    @classmethod
    def noise(cls, tok: Tokenizer) -> Haystack:
        return cls(tok, [], origin="noise")

    def window(self, rng: np.random.Generator, n_tokens: int) -> np.ndarray:
        """`n_tokens` consecutive pool tokens from a seeded offset, wrapping around."""
        if n_tokens <= 0:
            return np.zeros(0, dtype=np.int64)
        start = int(rng.integers(0, len(self.pool)))
        idx = (start + np.arange(n_tokens)) % len(self.pool)
        return self.pool[idx]

    def text_words(self, limit: int = 20_000) -> list[str]:
        """Distinct lowercase words (3-10 letters) of the pool, in order of first appearance."""
        text = self.tok.decode(self.pool[: 200_000].tolist())
        seen: dict[str, None] = {}
        for raw in text.split():
            word = raw.strip(".,;:!?\"'()[]{}<>*_`").lower()
            if 3 <= len(word) <= 10 and word.isascii() and word.isalpha():
                seen.setdefault(word, None)
                if len(seen) >= limit:
                    break
        return list(seen)

    def is_line_break(self, token: int) -> bool:
        if token not in self._newline:
            self._newline[token] = self.tok.decode([int(token)]).endswith("\n")
        return self._newline[token]

    def snap(self, hay: np.ndarray, pos: int) -> int:
        """The insertion point nearest `pos` that follows a line break, or `pos` if none is close."""
        if pos <= 0 or pos >= len(hay):
            return min(max(pos, 0), len(hay))
        for delta in range(SNAP_TOKENS + 1):
            for p in (pos - delta, pos + delta):
                if 0 < p <= len(hay) and self.is_line_break(int(hay[p - 1])):
                    return p
        return pos


def insert_needles(hay: Haystack, window: np.ndarray, needles: list[tuple[float, np.ndarray]]) -> np.ndarray:
    """`window` with each (depth, ids) needle spliced in at depth x len(window). Needles appear
    in order of depth (ties: in list order); snapping never reorders them."""
    order = sorted(range(len(needles)), key=lambda k: (needles[k][0], k))
    parts, last = [], 0
    for k in order:
        pos = max(hay.snap(window, round(needles[k][0] * len(window))), last)
        parts += [window[last:pos], needles[k][1]]
        last = pos
    parts.append(window[last:])
    return np.concatenate(parts)
