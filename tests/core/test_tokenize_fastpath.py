"""The tiktoken fast path gives exactly HF tokenizers' ids, on real text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from packhelp import stdlib_texts

from mixcraft.core.tokenize import SPLIT_CHARS, Tok, llama3_files, load_tokenizer, safe_splits

DEMO_BOOKS = Path(__file__).resolve().parents[2] / ".cache" / "demo" / "books"


def test_fast_path_is_on_for_llama3(tok):
    assert tok.backend == "tiktoken"
    assert tok.encode("Hello world").tolist() == [9906, 1917]


def test_ids_equal_hf_on_stdlib_files(tok):
    texts = stdlib_texts()
    assert len(texts) > 250 and sum(len(t) for _, t in texts) > 4_000_000, "corpus too small to mean much"
    differ = [path for path, text in texts if not np.array_equal(tok.encode(text), tok.encode_hf(text))]
    assert differ == []


def test_ids_equal_hf_on_long_documents_split_before_encoding(tok):
    """Whole packages as one document each (as the code_repos reader makes them): far longer than
    SPLIT_CHARS, so the fast path encodes safe pieces; HF encodes the whole string at once."""
    docs = {}
    for pkg in ("email", "asyncio", "unittest"):
        docs[pkg] = "\n\n".join(text for _, text in stdlib_texts((pkg,)))
    if DEMO_BOOKS.is_dir():  # the demo corpus, when `make demo` has fetched it: Gutenberg plays
        plays = sorted(p for p in DEMO_BOOKS.rglob("*") if p.is_file() and p.suffix in ("", ".txt"))[:5]
        docs.update({p.name: p.read_text(encoding="utf-8", errors="replace") for p in plays})
    for name, text in docs.items():
        assert len(safe_splits(text)) > 1 or len(text) <= SPLIT_CHARS
        assert np.array_equal(tok.encode(text), tok.encode_hf(text)), name
    assert max(len(t) for t in docs.values()) > 5 * SPLIT_CHARS


@pytest.mark.parametrize("text", [
    "plain <|begin_of_text|> in a web page <|eot_id|>",
    "\u00e9t\u00e9 \u4f60\u597d \U0001f600 \r\n\r\n  \t tabs 1234567 it's they'll",
    "x" * 10 + "\n" + " " * 50 + "\n\n\nend",
])
def test_edge_texts_agree(tok, text):
    assert tok.encode(text).tolist() == tok.encode_hf(text).tolist()
    assert 128000 not in tok.encode(text).tolist()  # special-token text stays text


def test_safe_splits_cut_only_before_a_non_space_line_start():
    text = ("def f():\n    return 1\n\n" * 20_000)
    pieces = safe_splits(text, target=1000)
    assert "".join(pieces) == text and len(pieces) > 100
    for a in pieces[:-1]:
        assert a.endswith("\n")
    for b in pieces[1:]:
        assert not b[0].isspace()


def test_self_check_disables_a_disagreeing_rank_file(tmp_path):
    """A tokenizer.model that does not match tokenizer.json: the load-time check falls back to
    HF tokenizers instead of producing different ids."""
    json_path, model_path = llama3_files()
    lines = model_path.read_text().splitlines()
    # Swap the ranks of two tokens the self-check sample uses ("Hello" = 9906, " world" = 1917).
    tok_a, rank_a = lines[9906].split()
    tok_b, rank_b = lines[1917].split()
    lines[9906], lines[1917] = f"{tok_a} {rank_b}", f"{tok_b} {rank_a}"
    bad = tmp_path / "tokenizer.model"
    bad.write_text("\n".join(lines) + "\n")
    from tokenizers import Tokenizer

    t = Tok("llama3-bad-ranks", json_path, bad, hf=Tokenizer.from_file(str(json_path)))
    assert t.backend == "hf"
    assert t.encode("Hello world").tolist() == [9906, 1917]


def test_load_tokenizer_is_cached():
    assert load_tokenizer("llama3") is load_tokenizer("llama3")
