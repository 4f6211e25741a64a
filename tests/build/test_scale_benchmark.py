"""benchmarks/scale.py: the cost model's arithmetic on fixed rates, and the script end to end."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
RATES = {"read_jsonl": 100.0, "read_jsonl_zst": 80.0, "filter": 0.3, "minhash": 2.0, "shuffle_map": 50.0,
         "shuffle_reduce": 50.0, "tokenize_tok_s": 2.5e6, "bytes_per_token_code": 4.0, "bytes_per_token_text": 4.3,
         "pack_write_tok_s": 3e7, "merge_parts_s": 0.1}


@pytest.fixture(scope="module")
def scale():
    sys.path.insert(0, str(BENCH))  # the script imports its neighbour corpus.py
    try:
        spec = importlib.util.spec_from_file_location("scale_bench", BENCH / "scale.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCH))
        sys.modules.pop("scale_bench", None)


def test_stages_of_prolong_and_their_wall_times(scale):
    stages = scale.prolong_stages(RATES)
    assert [s.name for s in stages][0] == "stack partition (map)" and stages[-1].tasks == 1
    stack = stages[0]
    assert stack.core_seconds == pytest.approx(scale.STACK_BYTES / 1e6 / 50.0)
    one, many = scale.wall(stack, 1, 0), scale.wall(stack, 64, 0)
    per_task = stack.core_seconds / stack.tasks
    assert one == pytest.approx(-(-stack.tasks // 32) * per_task)  # whole waves of 32 cores
    assert stack.tasks == 2048 and many == pytest.approx(per_task)  # the plan's 2,048 map tasks: 1 wave on 64 nodes
    assert scale.wall(stack, 64) == pytest.approx(many + scale.STAGE_LAUNCH_S)


def test_report_names_the_critical_path_and_checks_the_goal(scale, capsys):
    result = scale.report(RATES, scale.prolong_stages(RATES))
    out = capsys.readouterr().out
    assert "critical path at  64 nodes: " in out and "goal <= 1/50" in out
    assert 0 < result["ratio_64_1_without_launch"] < result["ratio_64_1"] < 1


def test_the_script_measures_every_rate(tmp_path):
    """About 11 s: it broke once, unnoticed, when the dedup and shuffle code moved."""
    proc = subprocess.run([sys.executable, "scale.py", "--sample-mb", "0.2", "--json", str(tmp_path / "s.json")],
                          cwd=BENCH, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "shuffle_reduce" in proc.stdout and "wall at 64 nodes / 1 node:" in proc.stdout


def test_a_source_with_fewer_pieces_than_tasks_bounds_the_build_stage(scale, monkeypatch):
    """Were tulu-v2 read by whole file (3), at most 3 of its tasks would get input: its share of
    the work split 3 ways, the build stage's longest task."""
    monkeypatch.setitem(scale.DATASET_PIECES, "allenai/tulu-v2-sft-mixture", 3)
    build = scale.prolong_stages(RATES)[1]
    budget = scale.TOTAL_TOKENS * 0.03
    tulu = budget * RATES["bytes_per_token_text"] / 1e6 / RATES["read_jsonl"] + budget / RATES["tokenize_tok_s"] \
        + budget / RATES["pack_write_tok_s"]
    assert build.longest == pytest.approx(tulu / 3)
