"""Synthetic data end to end: synth (fake backend) -> chat JSONL -> build -> MDS with `mask`."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import REPO, run_cli


def _build(tmp_path: Path, recipe_file: str, paths: list[Path], seq_len: int, verify: bool = True) -> dict:
    """Build a shipped recipe over `paths` (its sources and proportions kept as shipped)."""
    recipe = yaml.safe_load((REPO / recipe_file).read_text())
    recipe["seq_len"] = seq_len
    (source,) = recipe["sources"]
    source["reader"]["paths"] = [str(p) for p in paths]
    source["filters"] = [{"type": "max_tokens", "value": seq_len}]
    path = tmp_path / Path(recipe_file).name
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / recipe["name"]
    run_cli("build", str(path), "--out", str(out), check=True)
    if verify:
        run_cli("verify", str(out), check=True)
    return json.loads((out / "manifest.json").read_text()) | {"out": str(out)}


def _rows(out: str, rel: str) -> list[dict]:
    from streaming import StreamingDataset

    ds = StreamingDataset(local=f"{out}/{rel}", shuffle=False, batch_size=1)
    return [ds[i] for i in range(ds.num_samples)]


def _synth_round(tmp_path: Path) -> Path:
    run_cli("synth", "self-lengthen", str(REPO / "recipes/synth/fake-smoke.yaml"), "--out", str(tmp_path / "sl"),
            "--set", "self_lengthen.n_instructions=12", "--no-progress", check=True)
    return tmp_path / "sl" / "round_1"


def _check_masked_rows(manifest: dict, rel: str, tok) -> None:
    assert all(s["mask"] for s in manifest["streams"])
    rows = _rows(manifest["out"], rel)
    assert rows, f"no rows were packed for {rel}"
    eot, header = tok.special_id("<|eot_id|>"), tok.special_id("<|start_header_id|>")
    for row in rows:
        ids, mask = row["input_ids"], row["mask"]
        assert mask.dtype == np.uint8 and len(mask) == len(ids)
        assert 0 < mask.sum() < len(mask)
        assert not mask[ids == header].any(), "header tokens must not count in the loss"
        # every <|eot_id|> closing an assistant turn counts; those closing user turns do not
        assert mask[ids == eot].any() and not mask[ids == eot].all()


def test_the_extender_recipe_builds_only_extender_data_with_loss_masks(tmp_path, tok):
    round_dir = _synth_round(tmp_path)
    # An Extender sample is the draft plus its extension: ~3K tokens of the fake model's words.
    ext = _build(tmp_path, "recipes/self-lengthen-extender.yaml", [round_dir / "ext_sft.jsonl"], 8192)
    assert [(s["source"], s["proportion"]) for s in ext["streams"]] == [("extender_sft", 1.0)]
    _check_masked_rows(ext, "extender_sft/8192", tok)
    gen_recipe = yaml.safe_load((REPO / "recipes/self-lengthen.yaml").read_text())
    assert [(s["name"], s["proportion"], Path(s["reader"]["paths"][0]).name) for s in gen_recipe["sources"]] == [
        ("generator_sft", 1.0, "gen_sft.jsonl")]


@pytest.mark.slow
def test_generator_and_extender_data_build_as_two_outputs(tmp_path, tok):
    round_dir = _synth_round(tmp_path)
    gen = _build(tmp_path, "recipes/self-lengthen.yaml", [round_dir / "gen_sft.jsonl"], 2048, verify=False)
    ext = _build(tmp_path, "recipes/self-lengthen-extender.yaml", [round_dir / "ext_sft.jsonl"], 8192, verify=False)
    # Two models, two builds: each output holds one role's data only, at its full proportion.
    assert [(s["source"], s["proportion"]) for s in gen["streams"]] == [("generator_sft", 1.0)]
    assert [(s["source"], s["proportion"]) for s in ext["streams"]] == [("extender_sft", 1.0)]
    assert gen["out"] != ext["out"]
    _check_masked_rows(gen, "generator_sft/2048", tok)
    _check_masked_rows(ext, "extender_sft/8192", tok)


def test_long_qa_counts_the_document_in_the_loss_by_default(tmp_path, tok):
    books = tmp_path / "books"
    books.mkdir()
    (books / "book.txt").write_text((REPO / "mixcraft" / "core" / "pack.py").read_text() * 3)
    config = tmp_path / "qa.yaml"
    config.write_text(yaml.safe_dump({"out": "lqa", "backend": {"type": "fake"}, "run": {"progress": False},
                                      "long_qa": {"inputs": ["books"]}}))
    run_cli("synth", "long-qa", str(config), check=True)
    lines = [json.loads(x) for x in (tmp_path / "lqa" / "long_qa.jsonl").read_text().splitlines()]
    assert lines and all(x["loss_on_input"] for x in lines)
    recipe = yaml.safe_load((REPO / "recipes/self-lengthen.yaml").read_text())
    recipe.update(name="qa", seq_len=1024)
    recipe["sources"] = [{"name": "qa", "reader": {"type": "chat", "paths": [str(tmp_path / "lqa/long_qa.jsonl")]},
                          "proportion": 1.0}]
    (tmp_path / "qa-recipe.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / "qa-out"
    run_cli("build", str(tmp_path / "qa-recipe.yaml"), "--out", str(out), check=True)
    m = json.loads((out / "manifest.json").read_text())
    assert m["ledger"]["qa"]["docs"]["read"] == len(lines)
    rows = _rows(str(out), "qa/1024")
    assert rows
    header = tok.special_id("<|start_header_id|>")
    for row in rows:
        mask = row["mask"]
        # with loss on the input, everything but headers (and BOS) counts
        assert mask.mean() > 0.9
        assert not mask[row["input_ids"] == header].any()
