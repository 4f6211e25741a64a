"""Bad input through the CLI: counted skips, one clear line, never a traceback; --strict."""

from __future__ import annotations

import io
import json
import re
import tarfile

RECIPE = """\
name: bad
seq_len: 128
sources:
  - name: short
    reader: {{type: text, paths: [short]{extra}}}
    proportion: 0.5
  - name: code
    reader: {{type: code_repos, paths: [repos]}}
    proportion: 0.5
"""


def _corpus(tmp_path):
    short = tmp_path / "short"
    short.mkdir()
    good = [json.dumps({"id": f"g{i}", "text": f"A perfectly good record number {i}. " * 20}) for i in range(6)]
    lines = [good[0], "{truncated", good[1], '{"text": "\xff"}', good[2], "[]", *good[3:]]
    (short / "a.jsonl").write_bytes("\n".join(lines).encode("utf-8", "surrogateescape").replace(b"\xc3\xbf", b"\xff"))
    (short / "empty.jsonl").write_bytes(b"")
    (short / "blob.bin").write_bytes(b"\x00" * 10)
    (short / "loop.jsonl").symlink_to(short / "loop.jsonl")
    repos = tmp_path / "repos"
    repos.mkdir()
    with tarfile.open(repos / "pkg-1.0.tar.gz", "w:gz") as tf:
        for name, data in [("pkg-1.0/README.md", b"# pkg\n" * 40), ("pkg-1.0/../../escape.txt", b"ESCAPE\n"),
                           ("pkg-1.0/img.png", b"\x89PNG\x00\x00"), ("pkg-1.0/m.py", b"print(1)\n" * 50)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    (repos / "notes.csv").write_text("x\n")


def test_bad_input_is_counted_and_the_build_succeeds(tmp_path, cli):
    _corpus(tmp_path)
    (tmp_path / "r.yaml").write_text(RECIPE.format(extra=""))
    out = tmp_path / "out"
    proc = cli("build", str(tmp_path / "r.yaml"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    ledger = json.loads((out / "manifest.json").read_text())["ledger"]
    short, code = ledger["short"], ledger["code"]
    assert short["docs"]["dropped"] == {"malformed_json": 1, "invalid_utf8": 1, "not_an_object": 1}
    assert short["docs"]["read"] == 9 and short["docs"]["kept"] == 6
    assert short["notes"] == {"empty_file": 1, "symlink": 1, "unsupported_format": 1}
    assert code["notes"] == {"binary": 1, "unsafe_path": 1, "unsupported_format": 1}
    assert not (tmp_path.parent / "escape.txt").exists()
    assert cli("verify", str(out)).returncode == 0


def test_strict_makes_the_first_skip_one_error_line(tmp_path, cli):
    _corpus(tmp_path)
    (tmp_path / "r.yaml").write_text(RECIPE.format(extra=""))
    proc = cli("build", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "out"), "--strict")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    # Dated stage lines are progress (printed when stderr is not a terminal); the error is one line.
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not re.match(r"\[\d{4}-\d\d-\d\d ", ln)]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "(run without --strict" in lines[0], lines


def test_unusable_sources_are_one_clear_line(tmp_path, cli):
    _corpus(tmp_path)
    for path in ("repos/notes.csv", "missing"):
        text = RECIPE.format(extra="").replace("paths: [repos]", f"paths: [{path}]")
        (tmp_path / "r.yaml").write_text(text)
        assert cli("build", str(tmp_path / "r.yaml"), "--dry-run").returncode == 0, "the plan needs no data"
        proc = cli("build", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "out"))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "r.yaml: sources[code].reader.paths[0]: " in proc.stderr
        assert not (tmp_path / "out").exists(), "refused before anything is written"
    (tmp_path / "r.yaml").write_text(RECIPE.format(extra="").replace("paths: [short]", "paths: [short/blob.bin]"))
    proc = cli("build", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "out"))
    assert "sources[short].reader.paths[0]: blob.bin: unsupported format for a text source" in proc.stderr
