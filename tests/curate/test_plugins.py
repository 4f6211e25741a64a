"""Filters by import path (curate/plugins.py): datatrove's own filters and a user's module run
in a real build, their drop reasons land in the ledger, and every mistake is one line."""

from __future__ import annotations

import importlib.util
import json
import pickle
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from datatrove.data import Document
from mixcorpus import build_recipe, write_recipe

from mixcraft.build.load import load_recipe, parse_recipe
from mixcraft.curate.filters import FILTERS, build_filters
from mixcraft.curate.plugins import snake_case
from mixcraft.errors import UserError
from mixcraft.schema import Where, parse

N_DOCS = 200
MARKER = "Return"  # in some docstrings, not all: checked below
SECRET = "object"

PLUGIN_MODULE = '''
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter


class NoMarker(BaseFilter):
    """Drops documents holding `marker`, with its own reason."""

    def __init__(self, marker: str, exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.marker = marker

    def filter(self, doc):
        return (False, "Has Marker") if self.marker in doc.text else True


class Redact(PipelineStep):
    """Not a filter: a step that drops short documents and rewrites the others."""

    def __init__(self, word: str, min_chars: int = 300):
        super().__init__()
        self.word, self.min_chars = word, min_chars

    def run(self, data, rank=0, world_size=1):
        for doc in data:
            if len(doc.text) >= self.min_chars:
                doc.text = doc.text.replace(self.word, "[redacted]")
                yield doc


class Splitter(PipelineStep):
    def run(self, data, rank=0, world_size=1):
        for doc in data:
            yield doc
            yield doc


class NeedsMissing(BaseFilter):
    _requires_dependencies = [("surely_not_a_module_xyz", "surely-not-a-package")]

    def filter(self, doc):
        return True
'''


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A user's module `myplugins` on the import path (the build's forked workers inherit it)."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "myplugins.py").write_text(textwrap.dedent(PLUGIN_MODULE))
    monkeypatch.syspath_prepend(str(folder))
    return folder


def _one(cfg: dict, base: Path = Path("/")):
    return parse(FILTERS[cfg["type"]], cfg, Where("r.yaml", "sources[a].filters[0]", base))


def test_a_datatrove_filter_by_import_path_keeps_its_args_and_pickles():
    cfg = _one({"type": "datatrove.pipeline.filters.RegexFilter", "args": {"regex_exp": r"\bTODO\b"}})
    again = pickle.loads(pickle.dumps(cfg))  # as Ray, Slurm and process pools ship a recipe
    assert again == cfg and again.args == {"regex_exp": r"\bTODO\b"}
    colon = _one({"type": "datatrove.pipeline.filters:RegexFilter", "args": {"regex_exp": "x"}})
    assert colon.type_name == "datatrove.pipeline.filters:RegexFilter"
    (flt,) = build_filters((again,), Path("/tmp"))
    assert flt.check(Document(text="a TODO here", id="1")) == (False, "regex_filter")
    assert flt.check(Document(text="all done", id="2")) == (True, None)


def test_builtin_datatrove_filters_take_args_too():
    """`{type: gopher_quality, args: {...}}` used to lose its args silently."""
    nested = _one({"type": "gopher_quality", "args": {"min_doc_words": 5}})
    flat = _one({"type": "gopher_quality", "min_doc_words": 5})
    assert nested.args == flat.args == {"min_doc_words": 5}
    with pytest.raises(UserError, match=r"filters\[0\]\.min_doc_words: given twice"):
        _one({"type": "gopher_quality", "min_doc_words": 5, "args": {"min_doc_words": 6}})


def test_reasons_are_snake_case():
    assert [snake_case(s) for s in ("URLFilter", "NoMarker", "Has Marker", "gopher_short_doc", "!!")] == [
        "url_filter", "no_marker", "has_marker", "gopher_short_doc", "dropped"]


def _first_docs(path: Path, n: int) -> list[str]:
    with open(path) as f:
        return [json.loads(line)["text"] for line, _ in zip(f, range(n), strict=False)]


def test_user_plugins_run_in_a_build_and_name_their_drops(plugin_dir, mix_corpus, tmp_path, tok):
    texts = _first_docs(mix_corpus["short"], N_DOCS)
    marked = sum(MARKER in t for t in texts)
    short = sum(MARKER not in t and len(t) < 300 for t in texts)
    assert 0 < marked < N_DOCS and 0 < short, "the fixture must exercise both plug-ins"
    recipe = write_recipe(tmp_path / "plug.yaml", {
        "name": "plug", "seed": 3, "seq_len": 1024,
        "sources": [{"name": "docs", "reader": {"type": "text", "paths": [str(mix_corpus["short"])]},
                     "max_docs": N_DOCS, "proportion": 1.0, "filters": [
                         {"type": "myplugins:NoMarker", "args": {"marker": MARKER}},
                         {"type": "myplugins.Redact", "args": {"word": SECRET}}]}]})
    out = tmp_path / "out"
    build_recipe(recipe, out)
    ledger = json.loads((out / "manifest.json").read_text())["ledger"]["docs"]
    assert ledger["docs"]["read"] == N_DOCS
    assert ledger["docs"]["dropped"]["has_marker"] == marked  # the filter's own reason, snake_cased
    assert ledger["docs"]["dropped"]["redact"] == short  # a step's drops, under its class name
    from mixcraft.mds import iter_rows

    text = "".join(tok.decode(np.asarray(r["input_ids"])) for r in iter_rows(out / "docs" / "1024"))
    assert "[redacted]" in text and f" {SECRET} " not in text, "the step's rewrite reached the tokens"
    resolved = yaml.safe_load((out / "recipe.resolved.yaml").read_text())
    assert resolved["sources"][0]["filters"][0] == {"type": "myplugins:NoMarker", "args": {"marker": MARKER}}
    assert load_recipe(out / "recipe.resolved.yaml").sources[0].filters == load_recipe(recipe).sources[0].filters


def _recipe(filters: list[dict]) -> dict:
    return {"name": "t", "seq_len": 64, "sources": [
        {"name": "a", "reader": {"type": "text", "paths": ["d.jsonl"]}, "proportion": 1.0, "filters": filters}]}


@pytest.mark.parametrize(("flt", "message"), [
    ({"type": "a..b"}, r"type: 'a\.\.b' is neither a built-in filter nor an import path: write package\.module\.Class"),
    ({"type": "mod:Cls:x"}, r"is neither a built-in filter nor an import path"),
    ({"type": "no_such_pkg_xyz.filters.F"}, r"cannot import 'no_such_pkg_xyz\.filters' \(No module named "
                                            r"'no_such_pkg_xyz'\): install it, or put its folder on PYTHONPATH"),
    ({"type": "myplugins.NoMarkr"}, r"module 'myplugins' has no 'NoMarkr' \(did you mean 'NoMarker'\?\)"),
    ({"type": "json.dumps"}, r"json\.dumps is a function, not a class"),
    ({"type": "collections.OrderedDict"}, r"is not a filter: give a datatrove PipelineStep"),
    ({"type": "myplugins.NoMarker"}, r"filters\[0\]\.args: myplugins\.NoMarker needs marker \(give it under args\)"),
    ({"type": "myplugins.NoMarker", "args": {"marker": "x", "mark": 1}},
     r"args\.mark: myplugins\.NoMarker has no parameter 'mark' \(did you mean 'marker'\?\)"),
    ({"type": "myplugins.NoMarker", "marker": "x"}, r"unknown key 'marker' \(allowed: args\)"),
    ({"type": "myplugins.NeedsMissing"}, r"pip install surely-not-a-package"),
    ({"type": "broken_plugin.F"}, r"importing 'broken_plugin' failed: ZeroDivisionError: division by zero"),
    ({"type": "gopher_qualty"}, r"unknown filter type 'gopher_qualty' \(did you mean 'gopher_quality'\?\)"),
])
def test_a_bad_plugin_is_one_line_naming_the_yaml_path(plugin_dir, tmp_path, cli, flt, message):
    (plugin_dir / "broken_plugin.py").write_text("x = 1 / 0\n")
    (tmp_path / "d.jsonl").write_text('{"text": "x"}\n')
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(_recipe([flt])))
    res = cli("build", path, "--dry-run")
    assert res.returncode == 2, res.stdout
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}: sources[a].filters[0]"), line
    assert __import__("re").search(message, line), line
    with pytest.raises(UserError):
        parse_recipe(_recipe([flt]), "r.yaml", tmp_path)


def test_datatrove_url_filter_by_import_path():
    """The issue's example: runs when its packages are installed, else one line saying which."""
    cfg = {"type": "datatrove.pipeline.filters.URLFilter", "args": {"extra_domains": ["spam.example"]}}
    needed = ("ahocorasick", "fasteners", "tldextract")
    if all(importlib.util.find_spec(m) for m in needed):
        (flt,) = build_filters((_one(cfg),), Path("/tmp"))
        assert flt.check(Document(text="x", id="1", metadata={"url": "https://spam.example/a"}))[0] is False
        assert flt.check(Document(text="x", id="2", metadata={"url": "https://docs.python.org/3/"})) == (True, None)
    else:
        with pytest.raises(UserError, match=r"URLFilter: Please install .*\(`pip install pyahocorasick fasteners "
                                            r"tldextract`\)"):
            _one(cfg)


def test_a_step_that_splits_documents_is_refused_when_it_runs(plugin_dir):
    (flt,) = build_filters((_one({"type": "myplugins.Splitter"}),), Path("/tmp"))
    with pytest.raises(UserError, match="turned document d into 2 documents; a filter may keep, change or drop"):
        flt.check(Document(text="x", id="d"))
