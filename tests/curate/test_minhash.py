"""curate/minhash.py computes datatrove's MinHash signature bit for bit: each shortcut is
checked against datatrove's own function on real text."""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
from pathlib import Path
from pydoc_data.topics import topics

import numpy as np
import pytest

from mixcraft.core.recipe import MinhashParams
from mixcraft.curate import minhash

REPO = Path(__file__).resolve().parents[2]
STDLIB = Path(sysconfig.get_paths()["stdlib"])
# Real prose, then what breaks naive tokenizers: contractions and spaCy's special cases, digits,
# diacritics, non-Latin scripts, emoji, symbols punctuation removal keeps, odd whitespace.
TRICKY = ("I cannot go, we're gonna wanna do it; dont im youre ive lets 'tis. "
          "Café déjà-vu naïve Ærø façade 3.14 1,000,000 ٣٤ 10km $5 US$3 5% a+b=c x<y |p| ~q ^r `s` "
          "Привет мир 東京都 😀👍 ™ © ° § ¶ †\u00a0nbsp\u2003em\u200bzero\x1cfs\tab\n\nnl  two a\u0301b "
          "e.g. i.e. a.m. U.S.A. mr. dr. o'clock rock'n'roll http://x.org/a?b=c foo@bar.com #tag @user")
TEXTS = [topics[k] for k in ("assignment", "typesmapping", "comparisons", "formatstrings")] + [TRICKY, "", "a b"]


@pytest.fixture(scope="module")
def hasher(tmp_path_factory):
    return minhash.MinHasher(minhash.datatrove_config(MinhashParams()), tmp_path_factory.mktemp("mh"))


def test_whitespace_means_the_same_to_str_split_and_re():
    """`simplify` relies on it: str.split() and datatrove's r"\\s+" split at the same characters."""
    space = re.compile(r"\s")
    assert all((space.match(c) is not None) == c.isspace() for c in map(chr, range(0x110000)))


def test_simplify_equals_datatrove(hasher):
    from datatrove.utils.text import simplify_text

    norm = hasher.config.norm_config
    for text in TEXTS:
        assert minhash.simplify(text, norm) == simplify_text(text, norm)
    assert minhash.simplify(TRICKY, norm) != TRICKY.lower()  # the normalization did something


@pytest.mark.parametrize("max_entries", [minhash.CACHE_ENTRIES, 50])
def test_words_equal_datatrove(hasher, max_entries):
    """The chunk cache, with its a-z shortcut and its clearing, gives spaCy's words."""
    words = minhash.WordCache(hasher.words.nlp, max_entries=max_entries)
    norm = hasher.config.norm_config
    for text in TEXTS:
        simple = minhash.simplify(text, norm)
        assert words.words(simple) == hasher.step.word_tokenizer.word_tokenize(simple)
    assert len(words.words_of) <= max(max_entries, 2000)


def test_the_a_z_shortcut_agrees_with_spacy_on_every_word_and_special_case(hasher):
    """Every lowercase word of the language reference and the standard library's top-level
    modules, and every special case spaCy knows, tokenized alone by spaCy: a plain a-z word is
    one token, a special case is what spaCy says."""
    cache = hasher.words
    texts = [*topics.values(), *(p.read_text(errors="ignore") for p in sorted(STDLIB.glob("*.py")))]
    prose = {w for t in texts for w in re.findall(r"[a-z]+", t.lower())}
    special = {k for k in cache.special if k.isascii() and k.isalpha() and k.islower()}
    assert len(prose) > 10_000 and {"cannot", "gonna", "dont"} <= special
    fresh = minhash.WordCache(cache.nlp)
    fresh._learn(sorted(prose | special))
    for word in sorted(prose | special):
        with cache.nlp.memory_zone():
            spacy_words = tuple(t.text for t in cache.nlp.tokenizer(word))
        assert fresh.words_of[word] == spacy_words, word
    assert fresh.words_of["cannot"] == ("can", "not")


def test_signature_equals_datatrove_in_chunks(hasher, monkeypatch):
    monkeypatch.setattr(minhash, "SHINGLE_CHUNK", 100)  # many chunks
    for text in TEXTS[:5]:
        shingles = hasher.step.get_shingles(text)
        assert np.array_equal(np.sort(hasher.shingles(text)), np.sort(shingles.ravel()))
        assert len(shingles) > 100 or text is TRICKY
        expected = np.asarray(hasher.step.get_signature(shingles), dtype=np.uint64)
        assert np.array_equal(hasher.signature(text), expected)
    assert hasher.signature("too few words") is None and hasher.signature("") is None


def test_spacy_is_loaded_without_torch():
    code = ("import sys; from mixcraft.curate.minhash import warm_tokenizer; warm_tokenizer(); "
            "print('torch' in sys.modules, 'spacy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
