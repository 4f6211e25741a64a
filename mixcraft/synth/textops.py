"""Pure text rules of Self-Lengthen and LonGen: word counts, output filters, keep rule, length score.

No I/O and no model calls, so every rule here is unit-tested on its own.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from mixcraft.schema import Range

# CJK characters count one word each, as in Self-Lengthen's and LonGen's word counter; everything
# else is split on whitespace.
_CJK = re.compile(r"[\u4e00-\u9fff\u3000-\u303f\uff00-\uffef]")

# A response "ends with punctuation" when its last non-space character is one of these. The set is
# Self-Lengthen's English list plus its Chinese one: a truncated generation (finish_reason=length)
# almost never stops on one of them, which is the point of the filter.
END_PUNCTUATION = frozenset(".!?;:,-\"')]}>`…。！？”’）】")

NGRAM_WORDS = 10  # Self-Lengthen rejects any response in which a 10-word sequence occurs twice.

# Self-Lengthen's English stop words (llama/utils.py): a response whose first 2 or last 3 lines
# contain one of them is usually talking about itself ("Here is the revised version:", "This
# response covers...") instead of being the piece of writing. Matched as case-sensitive
# substrings, as the reference matches them, so "versions" and "responsed" count too.
STOP_WORDS = ("revised", "revision", "response", "version", "paragraph")
STOP_WORD_HEAD_LINES, STOP_WORD_TAIL_LINES = 2, 3


@dataclass(frozen=True)
class ResponseFilters:
    """The `filters:` block: Self-Lengthen's checks on every generated and extended answer
    (its utils.check_response). The defaults are its English ones; `stop_words: []` turns the
    self-reference check off (its Chinese pipeline has none)."""

    end_punctuation: bool = True
    stop_words: tuple[str, ...] = STOP_WORDS
    ngram_words: Annotated[int, Range(ge=2)] = NGRAM_WORDS


def count_words(text: str) -> int:
    """Words as LonGen counts them: CJK characters one each, other text split on whitespace."""
    n_cjk = len(_CJK.findall(text))
    return n_cjk + len(_CJK.sub(" ", text).split())


def ends_with_punctuation(text: str) -> bool:
    stripped = text.rstrip()
    return bool(stripped) and stripped[-1] in END_PUNCTUATION


def first_repeated_ngram(text: str, n: int = NGRAM_WORDS) -> tuple[str, ...] | None:
    """The first n-word sequence that occurs twice, or None. Degenerate loops show up this way."""
    words = text.split()
    seen: set[tuple[str, ...]] = set()
    for i in range(len(words) - n + 1):
        gram = tuple(words[i : i + n])
        if gram in seen:
            return gram
        seen.add(gram)
    return None


def stop_word_in_ends(text: str, stop_words: Sequence[str]) -> str | None:
    """The first stop word found in the first 2 or last 3 lines of `text`, or None."""
    lines = text.rstrip().split("\n")
    ends = "\n".join(lines[:STOP_WORD_HEAD_LINES] + lines[-STOP_WORD_TAIL_LINES:])
    return next((w for w in stop_words if w in ends), None)


def check_response(text: str, filters: ResponseFilters = ResponseFilters()) -> str | None:
    """The reason a generated response is rejected (snake_case, counted by the runner), or None.
    Checked in the reference's order: final punctuation, stop words, repeated n-gram."""
    if not text.strip():
        return "empty"
    if filters.end_punctuation and not ends_with_punctuation(text):
        return "no_final_punctuation"
    if stop_word_in_ends(text, filters.stop_words) is not None:
        return "stop_word"
    if first_repeated_ngram(text, filters.ngram_words) is not None:
        return "repeated_ngram"
    return None


def split_paragraphs(text: str) -> tuple[list[str], str]:
    """(paragraphs, separator): split on blank lines, or on single newlines when that gives at
    most two parts. The Extender halves a response by paragraphs; a response written as one or two
    blocks would otherwise have no usable middle. Join with the separator to keep the layout.
    """
    parts = [p for p in text.split("\n\n") if p.strip()]
    if len(parts) > 2:
        return parts, "\n\n"
    lines = [p for p in text.split("\n") if p.strip()]
    return (lines, "\n") if len(lines) > len(parts) else (parts, "\n\n")


def length_ranks(lengths: Sequence[int]) -> list[float]:
    """r in (0, 1] per sample: 1 for the shortest, 1/N for the longest; ties share their mean rank.
    (Self-Lengthen's `drop_short` ranks by `len(text)`, characters; its callers here do too.)

    Self-Lengthen's code gives every member of a tie the rank of the tie's shortest position, so N
    equally long samples all get r = 1 and are all dropped; the mean rank keeps the expected keep
    rate at ~0.595 whatever the ties.
    """
    n = len(lengths)
    order = sorted(range(n), key=lambda i: lengths[i])
    ranks = [0.0] * n
    start = 0
    while start < n:
        end = start
        while end + 1 < n and lengths[order[end + 1]] == lengths[order[start]]:
            end += 1
        mean_pos = (start + end) / 2
        for k in range(start, end + 1):
            ranks[order[k]] = 1.0 - mean_pos / n
        start = end + 1
    return ranks


def length_biased_keep(lengths: Sequence[int], rng: random.Random) -> list[bool]:
    """Self-Lengthen's keep rule: keep sample i if a uniform draw exceeds 2 r_i^3.

    With distinct lengths the expected keep rate is the integral of max(0, 1 - 2r^3) over [0, 1],
    2^(-1/3) - 2^(-4/3)/2 = 0.5953: the longest ~21% are always kept, the shortest ~21% never.
    Draws happen in input order, so callers pass samples in a fixed order for reproducibility.
    """
    return [rng.random() > 2 * r**3 for r in length_ranks(lengths)]


def longen_range(kind: str, target: float) -> tuple[float, float]:
    """The accepted word range [lo, hi] for a LonGen constraint of `kind` about `target` words."""
    if kind == "about":
        return 0.8 * target, 1.2 * target
    if kind == "above":
        return target, 1.5 * target
    if kind == "below":
        return 0.5 * target, target
    raise ValueError(f"unknown LonGen constraint kind {kind!r} (expected about, above, below or range)")


def longen_score(n_words: float, lo: float, hi: float) -> float:
    """LonGen's length-following score: 1 inside [lo, hi], falling linearly to 0 outside it.

    Below the range the score reaches 0 at lo/2 (score = 2n/lo - 1); above it, at 1.5 hi
    (score = 3 - 2n/hi). So for "about 2000" ([1600, 2400]): 1000 words score 0.25, 3000 score 0.5.
    """
    if lo <= n_words <= hi:
        return 1.0
    if n_words < lo:
        return max(0.0, 2.0 * n_words / lo - 1.0)
    return max(0.0, 3.0 - 2.0 * n_words / hi)


def score_length(text: str, kind: str, target: float, target_hi: float | None = None) -> float:
    """LonGen score of `text` against a constraint; `range` takes [target, target_hi]."""
    lo, hi = (target, target_hi) if kind == "range" and target_hi is not None else longen_range(kind, target)
    return longen_score(count_words(text), lo, hi)
