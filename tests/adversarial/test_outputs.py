"""Damaged or empty outputs: an empty stream fails the build (unless optional), and every edit
or loss in a finished build is a verify fault or a one-line refusal, never a traceback."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from helpers import rewrite_manifest, run_cli

RECIPE = """\
name: empty
seq_len: 256
total_tokens: 20000
sources:
  - name: pydoc
    reader: {{type: text, paths: [pages]}}
    proportion: 0.5{optional}
  - name: short
    reader: {{type: text, paths: [short.jsonl]}}
    proportion: 0.5
"""


def _corpus(tmp_path, optional=""):
    (tmp_path / "pages").mkdir()
    for i in range(5):
        (tmp_path / "pages" / f"p{i}.bin").write_bytes(b"\x00\x01binary")
    (tmp_path / "short.jsonl").write_text("".join(json.dumps({"text": f"line {i} " * 60}) + "\n" for i in range(40)))
    (tmp_path / "r.yaml").write_text(RECIPE.format(optional=optional))
    return tmp_path / "r.yaml"


def test_a_source_with_no_rows_fails_the_build_naming_why(tmp_path):
    res = run_cli("build", _corpus(tmp_path), "--out", tmp_path / "out")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    (line,) = [ln for ln in res.stderr.splitlines() if not ln.startswith("[")]  # the stage lines are dated
    assert re.fullmatch(rf"error: {re.escape(str(tmp_path / 'r.yaml'))}: sources\[pydoc\]: 0 rows: 5 "
                        rf"unsupported_format \(e\.g\. {re.escape(str(tmp_path / 'pages'))}/p\d\.bin\); fix its input, "
                        r"or set `optional: true` on the source to build without it", line), line
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_an_optional_empty_source_builds_and_stats_does_not_advise_upsampling(tmp_path):
    out = tmp_path / "out"
    run_cli("build", _corpus(tmp_path, "\n    optional: true"), "--out", out, check=True)
    assert run_cli("verify", out).returncode == 0
    why = json.loads(run_cli("stats", out, "--json").stdout)["why"]
    assert why["pydoc"].startswith("packed nothing") and "repeat" not in why["pydoc"]


@pytest.fixture
def built(small_build, tmp_path):
    out, _ = small_build
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    return copy


def _one_fault(out, expected):
    res = run_cli("verify", out)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    faults = [ln for ln in res.stderr.splitlines() if ln.startswith("FAULT")]
    assert any(expected in f for f in faults), faults
    return faults


def test_deleted_shard(built):
    m = json.loads((built / "manifest.json").read_text())
    shard = built / m["streams"][0]["path"] / m["shards"][m["streams"][0]["path"]][0]["basename"]
    shard.unlink()
    _one_fault(built, "shard file missing")


def test_deleted_index(built):
    m = json.loads((built / "manifest.json").read_text())
    (built / m["streams"][0]["path"] / "index.json").unlink()
    _one_fault(built, "index.json: missing (the subset cannot be read)")


def test_extra_stream_pointing_outside_out(built):
    m = json.loads((built / "manifest.json").read_text())
    m["streams"][0]["path"] = "../../etc"
    rewrite_manifest(built, m)
    res = run_cli("verify", built)
    assert res.returncode in (1, 2) and "Traceback" not in res.stderr


@pytest.mark.parametrize("text,message", [
    ("", "not valid JSON"), ("[]", "not a mixcraft manifest"), ("{\"manifest_version\": 99}", "manifest version 99"),
    ("{not json", "not valid JSON"),
])
def test_broken_manifest_is_one_line(built, text, message):
    (built / "manifest.json").write_text(text)
    for cmd in ("verify", "stats", "inspect"):
        res = run_cli(cmd, built)
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, (cmd, res.stderr)
