from pathlib import Path

import pytest

from helpers import REPO, run_cli
from mixcraft.build.load import check_inputs, load_recipe, parse_recipe
from mixcraft.errors import UserError


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "a.jsonl").write_text('{"text": "hello"}\n')
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


BASE = """\
name: t
seq_len: 1024
sources:
  - name: a
    reader: {type: text, paths: [data]}
    proportion: 0.5
  - name: b
    reader: {type: text, paths: [data]}
    proportion: 0.5
"""


def test_valid_recipe_resolves_paths_and_defaults(tmp_path):
    r = load_recipe(_write(tmp_path, BASE))
    assert [s.name for s in r.sources] == ["a", "b"]
    assert r.tokenizer == "llama3" and r.seed == 42 and r.output.compression == "zstd"
    assert r.sources[0].reader.paths == (str(tmp_path.resolve() / "data"),)
    assert r.sources[0].buckets[0].name == "1024" and r.sources[0].buckets[0].min_tokens == 0


def test_typo_gets_did_you_mean_with_file_and_yaml_path(tmp_path):
    p = _write(tmp_path, BASE.replace("proportion: 0.5\n  - name: b", "propotion: 0.5\n  - name: b"))
    with pytest.raises(UserError, match=r"r\.yaml: sources\[a\]\.propotion: unknown key 'propotion' "
                                        r"\(did you mean 'proportion'\?\)"):
        load_recipe(p)


def test_typo_on_cli_is_one_line_exit_2_no_traceback(tmp_path):
    p = _write(tmp_path, BASE.replace("proportion: 0.5\n  - name: b", "propotion: 0.5\n  - name: b"))
    proc = run_cli("build", str(p), "--dry-run")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "propotion" in lines[0] and "r.yaml" in lines[0]


@pytest.mark.parametrize("old,new,match", [
    ("proportion: 0.5\n  - name: b", "proportion: '3e-1'\n  - name: b", r"sources\[a\]\.proportion: expected a number, got '3e-1' \(write a plain number such as 0\.3\)"),
    ("seq_len: 1024", "seq_len: lots", r"seq_len: expected an integer"),
    ("proportion: 0.5\n  - name: b", "proportion: 0.6\n  - name: b", r"proportions sum to 1\.1, not 1"),
    ("type: text, paths: [data]}\n    proportion: 0.5\n  - name: b", "type: txt, paths: [data]}\n    proportion: 0.5\n  - name: b",
     r"sources\[a\]\.reader\.type: unknown reader type 'txt' \(did you mean 'text'\?\)"),
])
def test_bad_values_name_the_yaml_path(tmp_path, old, new, match):
    assert old in BASE
    with pytest.raises(UserError, match=match):
        load_recipe(_write(tmp_path, BASE.replace(old, new, 1)))


def test_missing_inputs_fail_the_build_not_the_dry_run(tmp_path):
    p = _write(tmp_path, BASE.replace("paths: [data]}\n    proportion: 0.5\n  - name: b",
                                      "paths: [nowhere]}\n    proportion: 0.5\n  - name: b"))
    recipe = load_recipe(p)  # --dry-run works before the data is there
    with pytest.raises(UserError, match=r"r\.yaml: sources\[a\]\.reader\.paths\[0\]: path '.*/nowhere' does not "
                                        r"exist \(relative paths are taken against the recipe's folder\)"):
        check_inputs(recipe)


def test_invalid_yaml_names_the_line(tmp_path):
    with pytest.raises(UserError, match=r"r\.yaml:4: not valid YAML: expected the node content"):
        load_recipe(_write(tmp_path, "name: t\nseq_len: 1\nsources: [\n  - {a: b\n"))


def test_groups_scale_member_proportions(tmp_path):
    text = """\
name: t
seq_len: 1024
groups: {short: 0.4}
sources:
  - {name: long, reader: {type: text, paths: [data]}, proportion: 0.6}
  - {name: s1, group: short, reader: {type: text, paths: [data]}, proportion: 0.75}
  - {name: s2, group: short, reader: {type: text, paths: [data]}, proportion: 0.25}
"""
    r = load_recipe(_write(tmp_path, text))
    assert [round(s.proportion, 6) for s in r.sources] == [0.6, 0.3, 0.1]
    assert r.sources[1].group_share == 0.75


def test_bucket_proportions_replace_the_source_one(tmp_path):
    data = {"name": "t", "seq_len": 524288, "sources": [
        {"name": "code", "reader": {"type": "hf", "dataset": "x/y"},
         "buckets": [{"min_tokens": 524288, "proportion": 0.5}, {"min_tokens": 65536, "chunk_tokens": 65536,
                                                                 "proportion": 0.5}]}]}
    r = parse_recipe(data, "mem.yaml", tmp_path)
    assert [b.name for b in r.sources[0].buckets] == ["524288", "65536"]
    assert r.sources[0].proportion == 1.0


def test_chunk_must_divide_seq_len(tmp_path):
    data = {"name": "t", "seq_len": 1000, "sources": [
        {"name": "a", "reader": {"type": "hf", "dataset": "x/y"}, "proportion": 1.0,
         "buckets": [{"min_tokens": 300, "chunk_tokens": 300}]}]}
    with pytest.raises(UserError, match=r"chunk_tokens: 300 must be positive and divide seq_len 1000"):
        parse_recipe(data, "mem.yaml", tmp_path)


def test_demo_recipe_dry_run_lists_sources(tmp_path):
    if not (REPO / ".cache/demo/code").is_dir():
        pytest.skip("demo corpus not fetched (make demo fetches it)")
    proc = run_cli("build", str(REPO / "recipes/demo.yaml"), "--dry-run", check=True)
    for name in ("code_repos", "books", "textbooks", "doc_pages", "changelogs"):
        assert name in proc.stdout
    assert "proportions sum to 1.0000" in proc.stdout
