import numpy as np
import pytest

from helpers import STDLIB
from mixcraft.core.tokenize import load_tokenizer, safe_splits
from mixcraft.errors import UserError


def test_llama3_hello_world(tok):
    assert tok.encode("Hello world").tolist() == [9906, 1917]
    assert tok.vocab_size == 128256
    assert tok.name == "llama3" and len(tok.file_sha256) == 64


def test_fast_path_is_tiktoken_and_matches_hf_on_real_code(tok):
    assert tok.backend == "tiktoken"
    texts = [p.read_text() for p in sorted(STDLIB.glob("*.py"))[:60]]
    assert sum(map(len, texts)) > 500_000, "fixture corpus too small to mean anything"
    for text in texts:
        assert np.array_equal(tok.encode(text), tok.encode_hf(text))


def test_special_token_text_stays_text(tok):
    ids = tok.encode("<|begin_of_text|>").tolist()
    assert 128000 not in ids and len(ids) > 1
    assert tok.decode(ids) == "<|begin_of_text|>"


def test_safe_splits_cover_text_and_keep_ids(tok):
    text = (STDLIB / "typing.py").read_text() * 3
    pieces = safe_splits(text, target=20_000)
    assert len(pieces) > 5 and "".join(pieces) == text
    whole = tok.encode_hf(text)
    parts = np.concatenate([tok.encode_hf(p) for p in pieces])
    assert np.array_equal(whole, parts)


def test_tokenizer_json_path_and_missing_file(tmp_path, tok):
    path = tok.json_path
    t = load_tokenizer(str(path))
    assert t.encode("Hello world").tolist() == [9906, 1917]
    with pytest.raises(UserError, match="not found"):
        load_tokenizer(str(tmp_path / "nope.json"))
