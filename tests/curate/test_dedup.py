"""Exact and MinHash near-duplicate removal across sources in a whole build; the recipe's
`dedup:` errors. (The stages themselves: test_dedup_stages.py; the signature: test_minhash.py.)"""

from __future__ import annotations

import json
from pydoc_data.topics import topics  # real English prose: the Python language reference

import pytest


def near_copy(text: str, changed: float = 0.05) -> str:
    """The text with its last `changed` share of words replaced: about 95% the same text."""
    words = text.split()
    keep = int(len(words) * (1 - changed))
    return " ".join(words[:keep] + [f"replacement{i}" for i in range(len(words) - keep)])


RECIPE = """\
name: dedup
seq_len: 256
dedup: {{exact: true, minhash: {{threshold: {threshold}}}}}
output: {{write_dropped: true}}
sources:
  - name: web
    reader: {{type: text, paths: [web.jsonl]}}
    proportion: 0.5
  - name: forum
    reader: {{type: text, paths: [forum.jsonl]}}
    proportion: 0.5
    tasks: 2
"""


def _write(path, docs):
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in docs))


@pytest.mark.parametrize("threshold", [0.8])
def test_build_drops_copies_across_sources(tmp_path, cli, threshold):
    _write(tmp_path / "web.jsonl", [("w-assign", topics["assignment"]), ("w-types", topics["typesmapping"])])
    _write(tmp_path / "forum.jsonl", [("f-copy", topics["assignment"]), ("f-near", near_copy(topics["typesmapping"])),
                                      ("f-own", topics["comparisons"]), ("f-copy2", topics["assignment"])])
    (tmp_path / "r.yaml").write_text(RECIPE.format(threshold=threshold))
    out = tmp_path / "out"
    proc = cli("build", str(tmp_path / "r.yaml"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    ledger = json.loads((out / "manifest.json").read_text())["ledger"]
    assert ledger["web"]["docs"]["dropped"] == {}
    assert ledger["forum"]["docs"]["dropped"] == {"exact_duplicate": 2, "near_duplicate": 1}
    assert ledger["forum"]["docs"]["read"] == 4 and ledger["forum"]["docs"]["kept"] == 1
    dropped = [json.loads(line) for f in sorted((out / ".mixcraft" / "dropped" / "forum").glob("*.jsonl"))
               for line in f.read_text().splitlines()]
    assert sorted((d["reason"], d["id"].split()[0]) for d in dropped) == [
        ("exact_duplicate", "f-copy"), ("exact_duplicate", "f-copy2"), ("near_duplicate", "f-near")]
    assert all(d["excerpt"] and "(copy of web:" in d["id"] for d in dropped)
    assert cli("verify", str(out)).returncode == 0


def test_dedup_recipe_errors_are_one_line(tmp_path, cli):
    _write(tmp_path / "web.jsonl", [("a", "x")])
    _write(tmp_path / "forum.jsonl", [("b", "y")])
    (tmp_path / "r.yaml").write_text(RECIPE.format(threshold=1.5))
    proc = cli("build", str(tmp_path / "r.yaml"), "--dry-run")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "r.yaml: dedup.minhash.threshold: must be <= 1, got 1.5" in proc.stderr
    (tmp_path / "r.yaml").write_text(RECIPE.format(threshold=0.8).replace("exact: true", "exakt: true"))
    proc = cli("build", str(tmp_path / "r.yaml"), "--dry-run")
    assert "dedup.exakt: unknown key 'exakt' (did you mean 'exact'?)" in proc.stderr


@pytest.mark.parametrize(("dedup", "message"), [
    ("{exact: true, tasks: 0}", "dedup.tasks: must be >= 1, got 0"),
    ("{exact: false}", "dedup: neither `exact: true` nor a `minhash:` block; remove `dedup:` or enable one"),
    ("{minhash: {num_buckets: 0}}", "dedup.minhash.num_buckets: must be > 0, got 0"),
    ("{exact: true, sources: [web, blog]}", "dedup.sources[1]: no source named 'blog' (have: web, forum)"),
    ("{exact: true, tasks: many}", "dedup.tasks: expected"),
])
def test_dedup_config_errors_name_the_key(tmp_path, cli, dedup, message):
    _write(tmp_path / "web.jsonl", [("a", "x")])
    _write(tmp_path / "forum.jsonl", [("b", "y")])
    text = RECIPE.format(threshold=0.8).replace("dedup: {exact: true, minhash: {threshold: 0.8}}", f"dedup: {dedup}")
    (tmp_path / "r.yaml").write_text(text)
    proc = cli("build", str(tmp_path / "r.yaml"), "--dry-run")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"r.yaml: {message}" in proc.stderr, proc.stderr


def test_dry_run_prints_each_dedup_stage(tmp_path, cli):
    _write(tmp_path / "web.jsonl", [("a", "x")])
    _write(tmp_path / "forum.jsonl", [("b", "y")])
    (tmp_path / "r.yaml").write_text(RECIPE.format(threshold=0.8).replace("}}\n", "}, tasks: 20}\n", 1))
    proc = cli("build", str(tmp_path / "r.yaml"), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    stages = [line for line in proc.stdout.splitlines() if line.startswith("stage ")]
    assert stages == ["stage dedup_signatures: 3 tasks", "stage exact_partitions: 20 tasks",
                      "stage minhash_buckets: 28 tasks", "stage dedup_verdicts: 3 tasks", "stage tasks: 3 tasks",
                      "stage finalize: 1 task"], proc.stdout
