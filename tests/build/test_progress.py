"""Progress for every stage: a piped build writes dated lines when each stage starts and ends,
and a progress line (tokens, estimated total, rate, ETA) every --progress-every seconds."""

from __future__ import annotations

import re

from helpers import TINY_RECIPE, make_corpus, spawn_cli
from mixcraft.build.progress import Plan, SourceCounts, estimate_total, progress_line

DATED = r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] "


def test_a_piped_build_shows_dated_lines_for_every_stage(tmp_path):
    make_corpus(tmp_path)
    (tmp_path / "tiny.yaml").write_text(TINY_RECIPE)
    proc = spawn_cli("build", tmp_path / "tiny.yaml", "--out", tmp_path / "out", "--workers", "1",
                     "--progress-every", "0.1", check=True)
    lines = proc.stderr.splitlines()
    for stage in ("prepare", "tasks", "finalize"):
        assert any(re.match(DATED + f"stage {stage}: started", ln) for ln in lines), proc.stderr
        assert any(re.match(DATED + f"stage {stage}: done in ", ln) for ln in lines), proc.stderr
    took = float(re.search(r"stage tasks: done in ([\d.]+) s", proc.stderr).group(1))
    ticks = [ln for ln in lines if re.match(DATED + r"stage tasks: [\d.]+[kMG]? ", ln)]
    assert took < 0.3 or ticks, proc.stderr
    for tick in ticks:
        assert re.search(r"tok/s.*; \d+/4 tasks done$", tick), tick


def test_totals_come_from_budgets_else_from_the_input_read():
    plan = Plan(budgets={"a": 1000.0, "b": None}, tasks={"a": 2, "b": 4})
    half = SourceCounts(tokens=400, chars=2000, input_bytes=4000, tasks_started=2)
    assert estimate_total(half, 1000.0, 2) == 1000.0
    assert estimate_total(half, None, 4) == 400 * (2000 * 4) / 2000  # 2 of 4 tasks' input, half read
    assert estimate_total(SourceCounts(), None, 4) is None
    line = progress_line({"a": SourceCounts(tokens=500, chars=1, input_bytes=1, tasks_started=1)}, plan, 10.0)
    assert line.startswith("stage tasks: 500 tokens, 50 tok/s (total not known yet); 0/6 tasks done"), line
