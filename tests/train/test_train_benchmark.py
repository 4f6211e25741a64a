"""benchmarks/train_throughput.py: refuses to fake GPU numbers on CPU; --cpu-smoke runs the path."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "train_throughput.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_without_a_gpu_it_says_so_and_exits_2(bench, capsys):
    assert bench.main([]) == 2
    assert "needs a CUDA GPU and none is visible" in capsys.readouterr().err


def test_cpu_smoke_uses_the_built_document_lengths(bench, mixture, tmp_path, capsys):
    out_json = tmp_path / "result.json"
    assert bench.main([str(mixture), "--cpu-smoke", "--steps", "2", "--warmup", "1", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "CPU SMOKE RUN" in out
    assert f"document lengths from {mixture}" in out and "repacked into 512-token rows" in out
    for needle in ("mixcraft:", "tok/s", "MFU", "peak mem", "data wait", "ratio mixcraft / HF:", "goals: MFU >= 40%"):
        assert needle in out, needle
    result = json.loads(out_json.read_text())
    assert result["mixcraft"]["tok_s"] > 0 and result["hf"]["impl"] == "sdpa" and result["ratio"] > 0


def test_rows_keep_the_document_length_distribution(bench, mixture):
    rng = np.random.default_rng(0)
    rows, label = bench.doc_rows(mixture, 256, 6, rng)  # built at 256: rows are used as they are
    assert len(rows) == 6 and all(r.sum() == 256 for r in rows) and "repacked" not in label
    rows, label = bench.doc_rows(None, 4096, 3, rng)
    assert len(rows) == 3 and all(r.sum() == 4096 for r in rows) and label.startswith("SYNTHETIC")


def test_gpu_checks_script_cpu_smoke(tmp_path, capsys):
    """benchmarks/train_gpu.py, the one command `make bench-gpu` runs, end to end on CPU: the
    attention comparison, context parallelism through torchrun (gloo), the throughput run."""
    spec = importlib.util.spec_from_file_location("train_gpu", SCRIPT.parent / "train_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--cpu-smoke", "--json", str(tmp_path / "gpu.json")]) == 0
    out = capsys.readouterr().out
    assert "CPU SMOKE RUN" in out and "train_gpu: all checks passed" in out
    assert "attention sdpa: max |err| vs masked SDPA" in out
    assert "context parallelism: 2 ranks x cpu vs 1" in out and "ratio mixcraft / HF:" in out
    result = json.loads((tmp_path / "gpu.json").read_text())
    assert result["context_parallel"]["max_loss_diff"] <= 1e-5 and result["throughput"]["mixcraft"]["tok_s"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_gpu_checks_script_refuses_without_a_gpu(capsys):
    spec = importlib.util.spec_from_file_location("train_gpu", SCRIPT.parent / "train_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([]) == 2
    assert "needs a CUDA GPU and none is visible" in capsys.readouterr().err
