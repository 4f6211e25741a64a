"""The trainer's `eval:` section: runs every N steps and at the end, writes metrics.jsonl records
and OUT/eval/step_*.json, and leaves the training trajectory untouched."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import yaml

from mixcraft.errors import UserError
from mixcraft.train import run_train

EVAL = {"every": 2, "tasks": ["passkey"], "lengths": [256], "depths": [0.0, 1.0], "samples": 1,
        "validation_rows": 1, "position_bucket": 64}


def config(tmp_path, build, name, **extra):
    cfg = {"out_dir": str(tmp_path / name), "seed": 0, "data": {"path": str(build)},
           "model": {"dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "ffn_dim": 128},
           "train": {"steps": 5, "tokens_per_step": 512, "lr": 3.0e-3, "warmup_steps": 1, "loss_chunk_tokens": 128},
           "checkpoint": {"every": 0, "final": False, "export_hf": False}, "log": {"every": 1}, **extra}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_eval_runs_every_n_steps_and_at_the_end_without_changing_training(tmp_path, build, capsys):
    run_train(config(tmp_path, build, "plain"))
    run_train(config(tmp_path, build, "evaluated", eval=EVAL))
    plain, evaluated = records(tmp_path / "plain"), records(tmp_path / "evaluated")
    train_recs = [r for r in evaluated if "loss" in r]
    assert [r["loss"] for r in train_recs] == [r["loss"] for r in plain]  # bit-identical trajectory
    evals = [r for r in evaluated if "eval" in r]
    assert [r["step"] for r in evals] == [2, 4, 5]
    assert set(evals[-1]["eval"]) == {"val_loss/manual", "val_loss/reference", "task/passkey", "task/passkey/256"}
    assert evals[0]["eval"]["val_loss/manual"] > evals[-1]["eval"]["val_loss/manual"]  # it trained in between
    for step in (2, 4, 5):
        result = json.loads((tmp_path / "evaluated" / "eval" / f"step_{step:08d}.json").read_text())
        assert set(result) == {"validation", "position_loss", "tasks", "meta"}
        assert result["meta"]["checkpoint"].endswith(f"step {step}")
    assert "eval step 5: val_loss/manual" in capsys.readouterr().out


@pytest.mark.parametrize("section,message", [
    ({"tasks": ["needle"]}, r"evaluated\.yaml: eval\.tasks: unknown task 'needle'"),
    ({"samples": 0}, r"evaluated\.yaml: eval\.samples: must be > 0"),
    ({"evry": 2}, r"evaluated\.yaml: eval\.evry: unknown key 'evry' \(did you mean 'every'\?\)"),
    ({"tasks": ["mine.jsonl"]}, r"eval\.tasks: mine\.jsonl: user JSONL tasks need generation"),
])
def test_eval_section_mistakes_are_one_line(tmp_path, build, section, message):
    with pytest.raises(UserError, match=message):
        run_train(config(tmp_path, build, "evaluated", eval=section))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_ranks_share_the_eval_and_agree_with_one(tmp_path, build):
    """torchrun, 2 CPU processes: each scores half the items; the results equal one process's."""
    run_train(config(tmp_path, build, "one", eval=EVAL))
    two = config(tmp_path, build, "two", eval=EVAL)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
           "-m", "mixcraft.train", str(two)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "eval" / "step_00000005.json").read_text())
    both = json.loads((tmp_path / "two" / "eval" / "step_00000005.json").read_text())
    assert both["meta"]["ranks"] == 2 and one["meta"]["ranks"] == 1
    for source, val in one["validation"]["sources"].items():
        assert both["validation"]["sources"][source]["loss"] == pytest.approx(val["loss"], rel=1e-4)
        assert both["validation"]["sources"][source]["tokens"] == val["tokens"]
    assert both["tasks"]["passkey"]["n"] == one["tasks"]["passkey"]["n"] == 2
