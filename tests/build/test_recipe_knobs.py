"""The mixture keys of a recipe are validated like the rest: one line naming the file, the
YAML path and the fix; and budgets follow proportions, bucket proportions and caps."""

import copy
import dataclasses
from pathlib import Path

import pytest

from helpers import run_cli
from mixcraft.build.load import parse_recipe
from mixcraft.core.mixture import bucket_budgets, source_budget
from mixcraft.core.recipe import LongText
from mixcraft.errors import UserError

FILE = "r.yaml"


def _src(name, proportion, **extra):
    return {"name": name, "reader": {"type": "hf", "dataset": f"org/{name}"}, "proportion": proportion, **extra}


BASE = {"name": "t", "seq_len": 4096, "total_tokens": 1_000_000,
        "sources": [_src("a", 0.5), _src("b", 0.5)]}


def _parse(edit=None, **top):
    data = copy.deepcopy(BASE)
    data.update(top)
    if edit:
        edit(data)
    return parse_recipe(data, FILE, Path("."))


def _set(i, **kv):
    return lambda d: d["sources"][i].update(kv)


@pytest.mark.parametrize("edit, top, message", [
    (_set(0, repeat=0), {}, r"r\.yaml: sources\[a\]\.repeat: must be > 0, got 0 \(to leave a source out"),
    (_set(0, repeat="2"), {}, r"sources\[a\]\.repeat: expected a number, got '2'"),
    (_set(1, max_tokens=0), {}, r"sources\[b\]\.max_tokens: must be > 0, got 0"),
    (_set(0, long_text={"min_token": 4096}), {}, r"sources\[a\]\.long_text\.min_token: unknown key 'min_token' "
                                                  r"\(did you mean 'min_tokens'\?\)"),
    (None, {"long_text": {"min_tokens": 4096, "upsample": 2, "remove": True}},
     r"r\.yaml: long_text: `remove: true` drops long documents, so `upsample` has no effect"),
    (None, {"long_text": {"min_tokens": 4096, "upsample": -1}}, r"long_text\.upsample: must be > 0, got -1"),
    (None, {"stages": [{"name": "4k", "seq_len": 1024, "share": 0.2}, {"name": "full", "seq_len": 4096,
                                                                        "share": 0.7}]},
     r"r\.yaml: stages: shares sum to 0\.9, not 1 \(4k=0\.2, full=0\.7\)"),
    (None, {"stages": [{"name": "4k", "seq_len": 1024, "share": 0.5}, {"name": "8k", "seq_len": 8192,
                                                                        "share": 0.5}]},
     r"stages\[8k\]\.seq_len: 8192 differs from the recipe's seq_len 4096"),
    (None, {"stages": [{"name": "all", "seq_len": 4096, "share": 1.0}]}, r"stages: a curriculum needs at least two"),
    (None, {"stages": [{"name": "a/b", "seq_len": 1024, "share": 0.5}, {"name": "c", "seq_len": 4096, "share": 0.5}]},
     r"stages\[a/b\]\.name: 'a/b' is not a safe stage name: use letters, digits"),
    (lambda d: d["sources"][0].update(name="premixed"), {"output": {"premix": True}},
     r"sources\[premixed\]: the name `premixed` is where output\.premix writes"),
])
def test_mixture_key_errors(edit, top, message):
    with pytest.raises(UserError, match=message):
        _parse(edit, **top)


def test_a_stage_error_names_the_stage():
    def long_buckets(d):
        d["sources"][0]["buckets"] = [{"min_tokens": 4096, "chunk_tokens": 4096}]

    stages = [{"name": "1k", "seq_len": 1024, "share": 0.3}, {"name": "4k", "seq_len": 4096, "share": 0.7}]
    with pytest.raises(UserError, match=r"r\.yaml: stages\[1k\]: at seq_len 1,024: sources\[a\]\.buckets\[0\]"
                                        r"\.chunk_tokens: 4096 must be positive and divide seq_len 1024"):
        _parse(long_buckets, stages=stages)


def test_budgets_follow_proportions_and_caps():
    r = _parse(_set(0, max_tokens=200_000))
    a, b = r.sources
    assert bucket_budgets(r, a, n_tasks=4) == {"4096": 50_000}  # min(500K, cap 200K) over 4 tasks
    assert source_budget(r, a) == 200_000 and source_budget(r, b) == 500_000
    no_total = _parse(_set(0, max_tokens=200_000), total_tokens=None)
    assert bucket_budgets(no_total, no_total.sources[0], 2) == {"4096": 100_000}
    assert bucket_budgets(no_total, no_total.sources[1], 2) == {"4096": None}


def test_stage2_bucket_proportions_and_cap_keep_their_ratio():
    """ProLong's 512K layout: one source, a 512K bucket and a 64K bucket of eight chunks a row."""
    def layout(d):
        d["sources"][0].pop("proportion")
        d["sources"][0]["buckets"] = [
            {"name": "524288", "min_tokens": 524288, "chunk_tokens": 524288, "proportion": 0.15},
            {"name": "65536", "min_tokens": 65536, "chunk_tokens": 65536, "proportion": 0.15}]
        d["sources"][1]["proportion"] = 0.7

    r = _parse(layout, seq_len=524288, total_tokens=10_000_000)
    code = r.sources[0]
    assert code.proportion == pytest.approx(0.3)
    assert [b.name for b in code.buckets] == ["524288", "65536"]
    assert code.buckets[1].chunk_tokens * 8 == r.seq_len
    assert bucket_budgets(r, code, 1) == pytest.approx({"524288": 1_500_000, "65536": 1_500_000})
    code = dataclasses.replace(code, max_tokens=1_000_000)
    assert bucket_budgets(r, code, 2) == pytest.approx({"524288": 250_000, "65536": 250_000})


def test_recipe_level_long_text_reaches_every_source_unless_overridden():
    own = {"min_tokens": 8192, "upsample": 1.0, "remove": True}
    r = _parse(_set(1, long_text=own), long_text={"min_tokens": 4096, "upsample": 2.5})
    assert r.sources[0].long_text == LongText(min_tokens=4096, upsample=2.5, remove=False)
    assert r.sources[1].long_text == LongText(**own)


def test_cli_reports_a_bad_knob_in_one_line(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("name: t\nseq_len: 1024\nsources:\n  - name: a\n    reader: {type: hf, dataset: org/a}\n"
                      "    proportion: 1.0\n    repeat: 0\n")
    res = run_cli("build", recipe, "--dry-run")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [  # "[a]" intact: not eaten as rich markup
        f"error: {recipe}: sources[a].repeat: must be > 0, got 0 (to leave a source out, remove it from "
        "the recipe)"]
    assert "Traceback" not in res.stderr
