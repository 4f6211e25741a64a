"""Synthetic data end to end: synth (fake backend) -> chat JSONL -> build -> MDS with `mask`."""

import json
from pathlib import Path

import numpy as np
import yaml

from helpers import REPO, run_cli


def _build_chat(tmp_path: Path, files: dict[str, Path], seq_len: int = 2048) -> dict:
    recipe = yaml.safe_load((REPO / "recipes/self-lengthen.yaml").read_text())
    recipe["seq_len"] = seq_len
    recipe["sources"] = [
        {"name": name, "reader": {"type": "chat", "paths": [str(path)]}, "proportion": 1 / len(files)}
        for name, path in files.items()
    ]
    path = tmp_path / "chat.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "out"
    run_cli("build", str(path), "--out", str(out), check=True)
    run_cli("verify", str(out), check=True)
    return json.loads((out / "manifest.json").read_text()) | {"out": str(out)}


def _rows(out: str, rel: str) -> list[dict]:
    from streaming import StreamingDataset

    ds = StreamingDataset(local=f"{out}/{rel}", shuffle=False, batch_size=1)
    return [ds[i] for i in range(ds.num_samples)]


def test_self_lengthen_output_packs_with_loss_mask(tmp_path, tok):
    run_cli("synth", "self-lengthen", "--out", str(tmp_path / "sl"), "--backend", "fake", "--n-instructions", "12",
            check=True)
    round_dir = tmp_path / "sl" / "round_1"
    m = _build_chat(tmp_path, {"gen": round_dir / "gen_sft.jsonl", "ext": round_dir / "ext_sft.jsonl"})
    assert all(s["mask"] for s in m["streams"])
    rows = _rows(m["out"], "gen/2048")
    assert rows, "no rows were packed"
    eot = tok.special_id("<|eot_id|>")
    header = tok.special_id("<|start_header_id|>")
    for row in rows:
        ids, mask = row["input_ids"], row["mask"]
        assert mask.dtype == np.uint8 and len(mask) == len(ids)
        assert 0 < mask.sum() < len(mask)
        assert not mask[ids == header].any(), "header tokens must not count in the loss"
        # every <|eot_id|> closing an assistant turn counts; those closing user turns do not
        assert mask[ids == eot].any() and not mask[ids == eot].all()


def test_long_qa_with_loss_on_input_counts_the_document(tmp_path, tok):
    books = tmp_path / "books"
    books.mkdir()
    (books / "book.txt").write_text((REPO / "mixcraft" / "core" / "pack.py").read_text() * 3)
    run_cli("synth", "long-qa", "--input", str(books), "--out", str(tmp_path / "lqa"), "--backend", "fake",
            "--loss-on-input", check=True)
    lines = [json.loads(x) for x in (tmp_path / "lqa" / "long_qa.jsonl").read_text().splitlines()]
    assert lines and all(x["loss_on_input"] for x in lines)
    m = _build_chat(tmp_path, {"qa": tmp_path / "lqa" / "long_qa.jsonl"}, seq_len=1024)
    led = m["ledger"]["qa"]
    assert led["docs"]["read"] == len(lines)
    rows = _rows(m["out"], "qa/1024")
    assert rows
    header = tok.special_id("<|start_header_id|>")
    for row in rows:
        mask = row["mask"]
        # with loss on the input, everything but headers (and BOS) counts
        assert mask.mean() > 0.9
        assert not mask[row["input_ids"] == header].any()
