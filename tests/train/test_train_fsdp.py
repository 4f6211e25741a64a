"""FSDP2 across 2 CPU processes (gloo, launched by torchrun) matches one process step for step,
and its DCP checkpoint resumes in a single process (a change of world size)."""

from __future__ import annotations

import shutil

import pytest
from train_fixtures import read_metrics, tiny_config, torchrun, write_mixture

from mixcraft.train import run_train


def test_two_processes_match_one_and_resume_in_one(tmp_path):
    data = write_mixture(tmp_path / "out", rows=8)
    # 512 tokens per step: 1 rank x 2 accumulation micro-batches, or 2 ranks x 1.
    one = tiny_config(tmp_path, data, name="one", train={"steps": 6})
    two = tiny_config(tmp_path, data, name="two", train={"steps": 6}, checkpoint={"every": 4, "keep": 5})
    proc = torchrun(two, 2)
    assert "world 2 x cpu" in proc.stdout
    run_train(one)
    ref, sharded = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert [r["step"] for r in sharded] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(ref, sharded, strict=True):
        # Same samples per step, loss normalized by the global valid-token count: equal up to
        # the order of floating-point sums across ranks.
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
        assert b["tokens"] == a["tokens"] == 512

    # Resume the 2-rank step-4 checkpoint in one process: DCP reshards model and optimizer state.
    ckpt = tmp_path / "two" / "checkpoints" / "step_00000004"
    shutil.copytree(ckpt, tmp_path / "resumed" / "checkpoints" / ckpt.name)
    run_train(tiny_config(tmp_path, data, name="resumed", train={"steps": 6}))
    after = read_metrics(tmp_path / "resumed")
    assert [r["step"] for r in after] == [5, 6]
    for a, b in zip(ref[4:], after, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
