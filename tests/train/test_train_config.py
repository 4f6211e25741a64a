"""Trainer YAML: the shipped configs load, mistakes are one-line errors naming file and key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from mixcraft.errors import UserError
from mixcraft.train.config import load_config
from mixcraft.train.metrics import format_line, train_flops
from mixcraft.train.model import ModelArgs
from mixcraft.train.optim import lr_at

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "train"


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


BASE = """
out_dir: out/x
data: {path: out/demo}
model: {dim: 64, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_dim: 128}
train: {steps: 10, tokens_per_step: 1024, lr: 1e-3}
"""


def test_shipped_configs_load():
    names = sorted(p.name for p in RECIPES.glob("*.yaml"))
    assert names == ["demo-tiny.yaml", "llama2-long.yaml", "prolong-512k.yaml", "prolong-64k.yaml", "prolong-sft.yaml"]
    cfgs = {p.stem: load_config(p) for p in RECIPES.glob("*.yaml")}
    p64, p512, sft, l2 = cfgs["prolong-64k"], cfgs["prolong-512k"], cfgs["prolong-sft"], cfgs["llama2-long"]
    # ProLong stage 1 / stage 2 / SFT and Llama 2 Long schedules (FACTS.md section 4 and 5).
    assert (p64.model.rope_theta, p64.train.lr, p64.train.warmup(), p64.train.steps) == (8e6, 1e-5, 500, 5000)
    assert (p64.train.tokens_per_step, p64.train.min_lr_ratio, p64.train.betas) == (4 * 2**20, 0.1, (0.9, 0.95))
    assert (p64.train.weight_decay, p64.train.grad_clip) == (0.1, 1.0)
    assert (p512.model.rope_theta, p512.train.lr, p512.train.steps) == (1.28e8, 5e-6, 2500)
    # ProLong stage 2: 8M tokens per step (16 rows of 512K), Ulysses over 8 GPUs, continuing stage 1.
    assert (p512.train.tokens_per_step, p512.train.context_parallel) == (8 * 2**20, 8)
    assert p512.model.init_from == p64.out_dir == str(RECIPES.parents[1] / "out/train/prolong-64k")
    assert (sft.train.lr, sft.train.warmup(), sft.train.steps) == (2e-5, 12, 250)
    assert (l2.model.rope_theta, l2.train.lr, l2.train.warmup_steps) == (5e5, 2e-5, 2000)
    # Paths are relative to the config file: `make demo` runs from the repository root, and so
    # would any other folder.
    demo, root = cfgs["demo-tiny"], RECIPES.parents[1]
    assert demo.data.path == str(root / "out/demo") and demo.train.steps == 20
    assert demo.out_dir == str(root / "out/train/demo-tiny")
    assert demo.cache_dir == root / "out/train/demo-tiny/data_cache"


def test_exponent_floats_defaults_and_relative_paths(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.train.lr == 1e-3  # YAML 1.1 reads "1e-3" as a string; the loader reads it as the number
    assert (cfg.train.precision, cfg.train.attention, cfg.checkpoint.resume) == ("auto", "auto", "auto")
    assert (cfg.train.context_parallel, cfg.train.grad_reduce, cfg.train.balance) == (1, "auto", True)
    assert cfg.out_dir == str(tmp_path / "out/x") and cfg.data.path == str(tmp_path / "out/demo")
    assert cfg.source == str(tmp_path / "cfg.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.steps = 3


def test_set_overrides_go_through_the_same_checks(tmp_path):
    path = write(tmp_path, BASE)
    cfg = load_config(path, ["train.steps=5", "model.rope_theta=8e6", "train.context_parallel=2",
                             "data.path=s3://bucket/out", "checkpoint.resume=never"])
    assert (cfg.train.steps, cfg.model.rope_theta, cfg.train.context_parallel) == (5, 8e6, 2)
    assert cfg.data.path == "s3://bucket/out"  # a URL is kept as written, not joined to the folder
    with pytest.raises(UserError, match=r"cfg.yaml: train.context_paralel: unknown key 'context_paralel' "
                                        r"\(did you mean 'context_parallel'\?\)"):
        load_config(path, ["train.context_paralel=2"])
    with pytest.raises(UserError, match=r"cfg.yaml: train.context_parallel: must be > 0, got 0"):
        load_config(path, ["train.context_parallel=0"])
    with pytest.raises(UserError, match=r"--set 'train.steps': expected KEY=VALUE"):
        load_config(path, ["train.steps"])


def test_cli_and_module_entry_points_take_set(tmp_path, capsys):
    """`mixcraft train CONFIG --set ...` and `python -m mixcraft.train CONFIG --set ...` (torchrun)."""
    from typer.testing import CliRunner

    from mixcraft.cli import app
    from mixcraft.train.__main__ import main

    path = write(tmp_path, BASE)
    result = CliRunner().invoke(app, ["train", str(path), "--set", "train.stepz=5"])
    assert result.exit_code == 2 and "train.stepz: unknown key 'stepz' (did you mean 'steps'?)" in result.stderr
    assert main([str(path), "--set", "train.stepz=5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.stepz: unknown key 'stepz' (did you mean 'steps'?)" in err


@pytest.mark.parametrize("change, message", [
    ({"train": {"lr": "fast"}}, r"cfg.yaml: train.lr: expected a number, got 'fast'"),
    ({"train": {"step": 3}}, r"cfg.yaml: train.step: unknown key 'step' \(did you mean 'steps'\?\)"),
    ({"train": {"steps": True}}, r"train.steps: expected an integer, got True"),
    ({"train": {"precision": "fp16"}}, r"train.precision: expected one of auto, bf16, fp32, got 'fp16' "
                                       r"\(did you mean 'bf16'\?\)"),
    ({"train": {"warmup_ratio": 0.1, "warmup_steps": 5}}, r"give either warmup_ratio or warmup_steps"),
    ({"train": {"warmup_ratio": 1.5}}, r"train.warmup_ratio: must be < 1, got 1.5"),
    ({"train": {"steps": 0}}, r"train.steps: must be > 0, got 0"),
    ({"train": {"betas": [0.9]}}, r"train.betas: expected two numbers in \[0, 1\), got \[0.9\]"),
    ({"train": {"grad_reduce": "sometimes"}}, r"train.grad_reduce: expected one of auto, once_per_step, "
                                              r"every_micro_batch"),
    ({"model": {"n_kv_heads": 3}}, r"model.n_kv_heads: n_heads 4 is not divisible by n_kv_heads 3"),
    ({"model": {"dim": None}}, r"model.dim: required when model.init_from is not set"),
    ({"data": {"proportions": {"books/64K": -1}}}, r"data.proportions.books/64K: must be >= 0, got -1"),
    ({"data": {"verify": "md5"}}, r"data.verify: expected one of sha1, size, got 'md5'"),
    ({"checkpoint": {"resume": "nowhere"}}, r"checkpoint.resume: '/\S+/nowhere' is not a directory"),
    ({"data": None}, r"cfg.yaml: data: expected a mapping, got None$"),
])
def test_mistakes_are_one_line_user_errors(tmp_path, change, message):
    raw = yaml.safe_load(BASE)
    for section, values in change.items():  # a None value deletes the key (or the section)
        merged = None if values is None else {**(raw.get(section) or {}), **values}
        raw[section] = None if merged is None else {k: v for k, v in merged.items() if v is not None}
    with pytest.raises(UserError, match=message) as err:
        load_config(write(tmp_path, yaml.safe_dump(raw)))
    assert "\n" not in str(err.value)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(UserError, match=r"nope.yaml: trainer config not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match=r"cfg.yaml:\d+: not valid YAML: expected"):
        load_config(write(tmp_path, "out_dir: x\ndata: [unclosed\n"))
    with pytest.raises(UserError, match=r"cfg.yaml: train: required key is missing"):
        load_config(write(tmp_path, "out_dir: x\ndata: {path: y}\nmodel: {init_from: z}\n"))


def test_lr_schedule_warmup_then_cosine_to_the_floor(tmp_path):
    cfg = load_config(write(tmp_path, BASE.replace("lr: 1e-3}", "lr: 1e-3, warmup_ratio: 0.2}"))).train
    lrs = [lr_at(s, cfg) for s in range(cfg.steps)]
    assert lrs[:2] == pytest.approx([5e-4, 1e-3])  # 2 warmup steps, peak on the second
    assert all(a > b for a, b in zip(lrs[1:], lrs[2:], strict=False)), "cosine should decrease monotonically"
    assert lrs[-1] == pytest.approx(1e-4)  # min_lr_ratio 0.1 at the last step


def test_attention_flops_count_documents_not_rows():
    args = ModelArgs(dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, ffn_dim=14336, vocab_size=128256)
    one_doc = train_flops(args, 65536, 65536**2)
    many_docs = train_flops(args, 65536, 32 * 2048**2)  # 32 documents of 2K in one 64K row
    dense = 6 * args.matmul_params() * 65536
    assert many_docs - dense == pytest.approx((one_doc - dense) / 32)
    assert args.matmul_params() == pytest.approx(7.5e9, rel=0.01)  # Llama-3-8B without the embedding


def test_log_line_matches_the_house_example():
    line = format_line(step=120, total=5000, loss=2.4131, lr=1e-5, tok_s=41_230, mfu=0.412, mem_gib=61.2,
                       eta_s=3600 + 52 * 60 + 5)
    assert line == "step 120/5000 | loss 2.413 | lr 1.0e-05 | 41.2k tok/s | mfu 41% | mem 61 GiB | eta 1h52m"
