"""Tables readable at 80 columns (report/fit.py): no number cut, folded or wrapped, no `…`,
source names whole; `--wide` keeps one table; `--dry-run` of every shipped recipe, offline,
names each hub source's dataset, config, split, data_files and where."""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from helpers import REPO, cli_env
from mixcraft.build.load import load_recipe
from mixcraft.core.manifest import read_manifest
from mixcraft.readers.base import HubParams
from mixcraft.report.fit import Col, Group, GroupedRows, fitted_tables
from mixcraft.report.summary import summarize
from mixcraft.report.table import input_text, render_plan, render_summary

RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
NUMBER = re.compile(r"(?<![\w.,])[+-]?\d{1,3}(?:,\d{3})+(?![\w,])|(?<![\w.,])\d+\.\d+%?(?![\w.])")


def _render(draw, width: int) -> str:
    console = Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
    draw(console)
    return console.file.getvalue()


def _assert_fits(text: str, width: int) -> None:
    assert "…" not in text, text
    too_long = [line for line in text.splitlines() if len(line) > width]
    assert not too_long, "\n".join(too_long)


def _cells(text: str) -> str:
    """A table's text with borders dropped and whitespace collapsed (a wrapped cell reads on)."""
    return " ".join(re.sub(r"[│┃┏┓┗┛┡┩┠┨└┘┌┐├┤┼╇╈╋━─┳┻╂╀╁┯┷]", " ", text).split())


def test_stats_at_80_columns_keeps_every_number_whole(knobs_build):
    out, _ = knobs_build
    m = read_manifest(out)
    s = summarize(m)
    text = _render(lambda c: render_summary(s, m, c), 80)
    _assert_fits(text, 80)
    wide = _render(lambda c: render_summary(s, m, c, wide=True), 300)
    numbers = NUMBER.findall(wide)
    assert len(numbers) > 50, "the fixture must show many numbers"
    for n in set(numbers):  # every number of the one-table layout is printed whole at 80 columns
        assert len(re.findall(rf"(?<![\d,.]){re.escape(n)}(?![\d,])", text)) >= 1, n
    for src in s.sources:
        assert re.search(rf"│ {re.escape(src.source)} +│", text), src.source


def test_wide_prints_one_table_however_wide(knobs_build):
    out, _ = knobs_build
    m = read_manifest(out)
    narrow = _render(lambda c: render_summary(summarize(m), m, c), 80).count("┏")
    wide = _render(lambda c: render_summary(summarize(m), m, c, wide=True), 80).count("┏")
    assert narrow > wide == 2, "mixture and ledger, one table each"


def test_a_group_too_wide_on_its_own_is_split_by_column():
    big = [f"{10 ** 12 + k:,}" for k in range(6)]  # 17 characters each
    rows = GroupedRows((Col("source", text=True, no_wrap=True),),
                       (Group(None, tuple(Col(f"n{k}") for k in range(6))), Group("why", (Col("note", text=True),))),
                       [])
    rows.add(["thestackv1_concat_by_repo"], big, ["a reason that is long enough to wrap over several lines"])
    text = _render(lambda c: [c.print(t) for t in fitted_tables(rows, c, title="t")], 60)
    _assert_fits(text, 60)
    assert all(n in text for n in big) and text.count("thestackv1_concat_by_repo") == text.count("┏") > 2
    assert "a reason that is long enough" in _cells(text)


def test_stats_in_a_real_process_at_80_columns(knobs_build):
    """The issue's check: `COLUMNS=80 mixcraft stats OUT` through a pipe contains no `…`."""
    out, _ = knobs_build
    proc = subprocess.run([sys.executable, "-m", "mixcraft", "stats", str(out)], env={**cli_env(), "COLUMNS": "80"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    _assert_fits(proc.stdout, 80)
    assert "documents dropped, by reason" in proc.stdout, "split by column group at 80 columns"
    wide = subprocess.run([sys.executable, "-m", "mixcraft", "stats", str(out), "--wide"],
                          env={**cli_env(), "COLUMNS": "80"}, capture_output=True, text=True, timeout=120)
    assert wide.returncode == 0 and "documents dropped, by reason" not in wide.stdout


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access during --dry-run: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _hub_lines(reader: HubParams) -> list[str]:
    lines = [reader.dataset, *([f"config {reader.config}"] if reader.config else [])]
    lines += [f"split {reader.split}"] if reader.split != "train" else []
    lines += [f"data_files {reader.data_files}"] if reader.data_files else []
    return lines + [f"where {k} = {v}" for k, v in reader.where.items()]


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_dry_run_of_every_shipped_recipe_offline(path, offline, run_cli):
    res = run_cli("build", path, "--dry-run")
    assert res.returncode == 0, res.stderr
    recipe = load_recipe(path)
    plans = recipe.stage_recipes or (recipe,)
    narrow = "".join(_render(lambda c, p=p: render_plan(p, c), 80) for p in plans)
    _assert_fits(narrow, 80)
    roomy = _cells("".join(_render(lambda c, p=p: render_plan(p, c), 200) for p in plans))
    hub = 0
    for plan in plans:
        for s in plan.sources:
            assert re.search(rf"│ {re.escape(s.name)} +│", narrow), f"{s.name} shown whole at 80 columns"
            assert s.name in res.stdout
            if isinstance(s.reader, HubParams) and s.reader.dataset:
                hub += 1
                for line in _hub_lines(s.reader):
                    assert line in roomy, (s.name, line)
                    assert line in _cells(res.stdout), (s.name, line)
    if path.stem in ("prolong", "llama2-long", "prolong-512k", "prolong-sft"):
        assert hub, "these recipes name hub datasets"


def test_sources_of_one_dataset_differ_in_the_plan():
    """llama2-long reads seven subsets of SlimPajama; each row says which (its `where`)."""
    recipe = load_recipe(REPO / "recipes" / "llama2-long.yaml")
    inputs = [input_text(s.reader) for s in recipe.sources]
    assert len(inputs) == len(set(inputs)) == 7
    assert all(i.startswith("cerebras/SlimPajama-627B\nwhere meta.redpajama_set_name = RedPajama") for i in inputs)


def test_data_files_config_and_split_are_shown(tmp_path, run_cli):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({"name": "r", "seq_len": 1024, "sources": [{
        "name": "stack", "proportion": 1.0, "reader": {
            "type": "hf", "dataset": "bigcode/the-stack-dedup", "config": "default", "split": "train[:1%]",
            "data_files": "data/python/*.parquet", "where": {"lang": "Python"}}}]}))
    res = run_cli("build", recipe, "--dry-run")
    assert res.returncode == 0, res.stderr
    text = _cells(res.stdout)
    for line in ("bigcode/the-stack-dedup", "config default", "split train[:1%]", "data_files data/python/*.parquet",
                 "where lang = Python"):
        assert line in text, line


def test_paths_stay_as_the_reader_describes_them(tmp_path):
    """A local source keeps its reader's own description (file names)."""
    recipe = load_recipe(Path(REPO / "recipes" / "demo.yaml"))
    assert [input_text(s.reader) for s in recipe.sources] == [s.reader.describe() for s in recipe.sources]
