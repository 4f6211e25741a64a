"""A recipe `validation:` block holds out a seeded fraction of each source's documents into
OUT/<source>/<bucket>/val subsets: disjoint from training, recorded in the manifest, verified,
shown by stats; without the block the output is what it was."""

from __future__ import annotations

import json

import numpy as np
import yaml

from helpers import run_cli
from mixcraft.core.manifest import read_manifest
from mixcraft.mds import iter_rows


def _recipe(tmp_path, validation):
    docs = tmp_path / "docs.jsonl"
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
    with open(docs, "w") as f:
        for i in range(300):
            text = f"document {i}: " + " ".join(rng.choice(words, size=int(rng.integers(40, 160))))
            f.write(json.dumps({"id": f"d{i}", "text": text}) + "\n")
    recipe = {"name": "val", "seed": 3, "seq_len": 512, "output": {"write_dropped": True},
              "sources": [{"name": "docs", "reader": {"type": "text", "paths": [str(docs)]}, "proportion": 1.0,
                           "tasks": 2}]}
    if validation:
        recipe["validation"] = validation
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path, docs


def _row_token_runs(subset):
    return [np.asarray(r["input_ids"]) for r in iter_rows(subset)]


def test_held_out_documents_are_disjoint_from_training(tmp_path, tok):
    recipe, docs = _recipe(tmp_path, {"fraction": 0.1})
    out = tmp_path / "out"
    run_cli("build", recipe, "--out", out, "--workers", "2", check=True)
    m = read_manifest(out)
    (stream,) = m.streams
    val = stream.validation
    assert val is not None and val.path == "docs/512/val" and val.rows > 0 and val.docs > 0
    held = [json.loads(line)["id"] for p in sorted((out / ".mixcraft" / "dropped" / "docs").glob("*.jsonl"))
            for line in p.read_text().splitlines() if json.loads(line)["reason"] == "held_out"]
    assert len(held) == val.docs == m.ledger["docs"].docs.dropped["held_out"]
    assert 0.05 < len(held) / 300 < 0.16, len(held)
    texts = {json.loads(line)["id"]: json.loads(line)["text"] for line in docs.read_text().splitlines()}
    train = np.concatenate(_row_token_runs(out / stream.path)).tobytes()
    val_ids = np.concatenate(_row_token_runs(out / val.path)).tobytes()
    for doc_id in held:
        ids = tok.encode(texts[doc_id])[8:24].tobytes()  # a stretch of the document's own tokens
        assert ids in val_ids, doc_id
        assert ids not in train, f"held-out {doc_id} reached the training rows"
    assert run_cli("verify", out).returncode == 0
    assert "validation: docs/512/val/ holds" in run_cli("stats", out).stdout


def test_no_validation_block_means_no_val_subsets(tmp_path):
    recipe, _ = _recipe(tmp_path, None)
    out = tmp_path / "out"
    run_cli("build", recipe, "--out", out, check=True)
    assert read_manifest(out).streams[0].validation is None
    assert not (out / "docs" / "512" / "val").exists()
