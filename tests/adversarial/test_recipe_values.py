"""Hostile or nonsense recipes: every one is refused with one line naming the file, the YAML path
and the fix (exit 2), before anything is read or written; none runs code or escapes OUT."""

from __future__ import annotations

import pytest

from helpers import run_cli

GOOD = """\
name: adv
seq_len: 1024
total_tokens: 100000
sources:
  - name: a
    reader: {type: text, paths: [data]}
    filters: [{type: min_chars, value: 5}]
    proportion: 0.5
  - name: b
    reader: {type: text, paths: [data]}
    proportion: 0.5
"""

CASES = [  # (replace this, with this, the error must match)
    ("name: adv", "name: ../../etc", r"name: '\.\./\.\./etc' is not a safe recipe name"),
    ("name: adv", 'name: "x; rm -rf ~"', r"name: 'x; rm -rf ~' is not a safe recipe name"),
    ("name: adv", "name: .hidden", r"name: '\.hidden' is not a safe recipe name"),
    ("name: adv", "name: ''", r"name: '' is not a safe recipe name"),
    ("  - name: a\n", "  - name: ../escape\n", r"sources\[\.\./escape\]\.name: '\.\./escape' is not a safe source"),
    ("  - name: a\n", "  - name: a/b\n", r"sources\[a/b\]\.name: 'a/b' is not a safe source name"),
    ("  - name: a\n", "  - name: premixed\n", None),  # allowed without output.premix
    ("    proportion: 0.5\n  - name: b", "    proportion: -0.5\n  - name: b", r"sources\[a\]\.proportion: must be > 0"),
    ("    proportion: 0.5\n  - name: b", "    proportion: .nan\n  - name: b", r"proportion: must be a finite number"),
    ("    proportion: 0.5\n  - name: b", "    proportion: .inf\n  - name: b", r"proportion: must be a finite number"),
    ("    proportion: 0.5\n  - name: b", "    proportion: 0\n  - name: b", r"sources\[a\]\.proportion: must be > 0"),
    ("    proportion: 0.5\n  - name: b", "    proportion: '0.5'\n  - name: b", r"expected a number, got '0\.5'"),
    ("    proportion: 0.5\n  - name: b", "    proportion: true\n  - name: b", r"expected a number, got True"),
    ("total_tokens: 100000", "total_tokens: -100", r"total_tokens: must be >= 1, got -100"),
    ("total_tokens: 100000", "total_tokens: 0", r"total_tokens: must be >= 1, got 0"),
    ("total_tokens: 100000", "total_tokens: 1e30", r"total_tokens: expected an integer, got 1e\+30"),
    ("seq_len: 1024", "seq_len: 1e12", r"seq_len: must be <= 1\.67772e\+07, got 1e\+12"),
    ("seq_len: 1024", "seq_len: 0", r"seq_len: must be >= 1, got 0"),
    ("seq_len: 1024", "seq_len: 1024.5", r"seq_len: expected an integer, got 1024\.5"),
    ("seq_len: 1024", "seq_len: [1024]", r"seq_len: expected an integer, got list"),
    ("{type: min_chars, value: 5}", "{type: min_chars, value: -5}", r"filters\[0\]\.value: must be >= 0, got -5"),
    ("{type: min_chars, value: 5}", "{type: min_chars, value: 5, x: 1}", r"filters\[0\]\.x: unknown key 'x'"),
    # A dotted type is a plug-in's import path (curate/plugins.py): named, but refused before it runs.
    ("{type: min_chars, value: 5}", "{type: os.system, value: 5}", r"filters\[0\]\.value: unknown key 'value'"),
    ("{type: min_chars, value: 5}", "{type: os.system, args: {command: ls}}",
     r"filters\[0\]\.type: os\.system is a builtin_function_or_method, not a class"),
    ("{type: min_chars, value: 5}", "{type: min chars, value: 5}", r"filters\[0\]\.type: unknown filter type"),
    ("{type: min_chars, value: 5}", "{type: gopher_quality, eval: 1}", r"unknown parameter for gopher_quality"),
    ("{type: text, paths: [data]}\n    filters", "{type: python, paths: [data]}\n    filters",
     r"reader\.type: unknown reader type 'python'"),
    ("{type: text, paths: [data]}\n    filters", "{type: text, paths: [data], dataset: x/y}\n    filters",
     r"give exactly one of `paths` .* or `dataset`"),
    ("{type: text, paths: [data]}\n    filters", "{type: text, paths: data}\n    filters",
     r"reader\.paths: expected a list, got 'data'"),
    ("{type: text, paths: [data]}\n    filters", "{type: text, paths: [\"\\0x\"]}\n    filters",
     r"paths\[0\]: a path cannot contain a NUL byte"),
    ("sources:\n", "output: {shard_size_bytes: -1}\nsources:\n", r"output\.shard_size_bytes: must be >= 65536"),
    ("sources:\n", "output: {shard_size_bytes: 8589934592}\nsources:\n", r"shard_size_bytes: must be <= 4\.29497e\+09"),
    ("sources:\n", "output: {compression: lz4}\nsources:\n", r"output\.compression: expected one of zstd, none"),
    ("sources:\n", "seed: 1\nseed: 2\nsources:\n", r"duplicate key 'seed'"),
    ("sources:\n", "groups: {short: 1.5}\nsources:\n", r"groups\.short: must be <= 1, got 1\.5"),
    ("sources:\n", "groups: {short: 0.5}\nsources:\n", r"groups\.short: no source names this group"),
    ("sources:\n", "validation: {fraction: 0.9}\nsources:\n", r"validation\.fraction: must be <= 0\.5"),
    ("sources:\n", "dedup: {exact: false}\nsources:\n", r"dedup: neither `exact: true` nor a `minhash:` block"),
    ("sources:\n", "dedup: {sources: [nope]}\nsources:\n", r"dedup\.sources\[0\]: no source named 'nope'"),
    ("sources:\n", "stages: [{name: x, seq_len: 512, share: 1.0}]\nsources:\n", r"stages: a curriculum needs"),
    ("    proportion: 0.5\n  - name: b", "    proportion: 0.5\n    repeat: 1000\n  - name: b",
     r"repeat: must be <= 100, got 1000"),
    ("    proportion: 0.5\n  - name: b", "    proportion: 0.5\n    tasks: 0\n  - name: b", r"tasks: must be >= 1"),
    ("    proportion: 0.5\n  - name: b", "    proportion: 0.5\n    buckets: [{min_tokens: 100, chunk_tokens: 3}]\n"
     "  - name: b", r"chunk_tokens: 3 must be positive and divide seq_len 1024"),
    ("  - name: b\n", "  - name: a\n", r"sources: source names repeat: \['a'\]"),
    ("name: adv\n", "name: adv\nname: adv2\n", r"duplicate key 'name'"),
    ("name: adv\n", "!!python/object/apply:os.system ['touch pwned']\n", r"not valid YAML"),
    ("name: adv\n", "name: !!python/object/apply:os.system ['touch pwned']\n", r"not valid YAML"),
]


@pytest.mark.parametrize("old,new,match", CASES)
def test_nonsense_is_one_line_exit_2(tmp_path, old, new, match):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.jsonl").write_text('{"text": "hello there"}\n')
    assert old in GOOD, old
    (tmp_path / "r.yaml").write_text(GOOD.replace(old, new, 1))
    res = run_cli("build", tmp_path / "r.yaml", "--dry-run")
    if match is None:
        assert res.returncode == 0, res.stderr
        return
    assert res.returncode == 2, res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {tmp_path / 'r.yaml'}"), res.stderr
    assert __import__("re").search(match, lines[0]), lines[0]
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "out").exists()


def test_billion_laughs_is_refused_fast(tmp_path):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    lines += [f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 9) + "]" for i in range(1, 9)]
    (tmp_path / "r.yaml").write_text("\n".join(lines) + "\n")
    res = run_cli("build", tmp_path / "r.yaml", "--dry-run")
    assert res.returncode == 2 and "aliases (*name) expand to 490,329,064 values" in res.stderr
