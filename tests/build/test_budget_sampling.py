"""Under a token budget a source's units are read in a seeded order, so the budget samples the
whole input instead of taking the first files in path order; without a budget, path order."""

from __future__ import annotations

import json

import yaml

from helpers import run_cli
from mixcraft.mds import iter_rows


def _build(tmp_path, name, data_dir="data", **top):
    data = tmp_path / data_dir
    if not data.exists():
        data.mkdir(parents=True)
        for i in range(40):
            (data / f"f{i:02d}.jsonl").write_text(json.dumps({"id": f"doc{i:02d}", "text": f"file {i:02d}. " * 150})
                                                  + "\n")
    recipe = {"name": name, "seq_len": 256, "sources": [
        {"name": "s", "reader": {"type": "text", "paths": [str(data)]}, "proportion": 1.0}], **top}
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / name
    run_cli("build", tmp_path / f"{name}.yaml", "--out", out, "--workers", "1", check=True)
    ids = []
    for row in iter_rows(out / "s" / "256"):
        ids += [i for i in json.loads(row["doc_ids"]) if i and i not in ids]
    return ids


def test_a_budget_samples_files_across_the_input(tmp_path):
    first = _build(tmp_path, "a", total_tokens=3000, seed=1)
    assert 5 <= len(first) < 20, first
    assert max(int(i[3:]) for i in first) >= 20, f"only early files were read: {first}"
    assert first != sorted(first), "read in a seeded order, not path order"
    assert _build(tmp_path, "b", total_tokens=3000, seed=1) == first, "the same seed, the same sample"
    assert _build(tmp_path, "c", total_tokens=3000, seed=2) != first
    assert _build(tmp_path, "e", data_dir="elsewhere/copy", total_tokens=3000, seed=1) == first, \
        "the same files in another folder: the same sample (the order hashes paths below `paths`)"
    everything = _build(tmp_path, "d")
    assert everything == sorted(everything), "without a budget, path order"
