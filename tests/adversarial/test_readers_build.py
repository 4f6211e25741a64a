"""Hostile inputs through `mixcraft build`: what reaches the shards, what the manifest counts,
what exits 2 with one line."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import fsspec

from helpers import manifest_data, run_cli
from mixcraft.mds import iter_rows

SECRET = "root:x:0:0"


def _recipe(tmp_path: Path, reader: str, name: str = "src") -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(f"name: hostile\nseq_len: 128\nsources:\n  - name: {name}\n    reader: {reader}\n"
                    f"    proportion: 1.0\n")
    return path


def _texts(out: Path, tok) -> list[str]:
    manifest = manifest_data(out)
    return [tok.decode(row["input_ids"]) for s in manifest["streams"] for row in iter_rows(out / s["path"])]


def test_passwd_through_a_glob_and_a_symlink_never_reaches_the_shards(tmp_path, tok):
    books = tmp_path / "books"
    books.mkdir()
    (books / "alice.txt").write_text("Alice was beginning to get very tired of sitting by her sister.\n" * 20)
    (books / "passwd.txt").symlink_to("/etc/passwd")
    out = tmp_path / "out"
    proc = run_cli("build", str(_recipe(tmp_path, "{type: books, paths: ['books/*.txt']}")), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    texts = _texts(out, tok)
    assert texts and any("Alice" in t for t in texts) and not any(SECRET in t for t in texts)
    ledger = manifest_data(out)["ledger"]["src"]
    assert ledger["notes"] == {"symlink": 1} and ledger["docs"]["read"] == 1
    assert ledger["examples"]["symlink"] == [str(books / "passwd.txt")]


def test_a_malicious_clone_in_a_build_runs_nothing(tmp_path, tok):
    repo = tmp_path / "repos" / "evil"
    repo.mkdir(parents=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    (repo / "main.py").write_text("def main():\n    return 'hello from a clone'\n" * 60)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "c"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)
    marker = tmp_path / "PWNED"
    with open(repo / ".git" / "config", "a") as f:
        f.write(f"[core]\n\tfsmonitor = touch {marker}\n")
    out = tmp_path / "out"
    proc = run_cli("build", str(_recipe(tmp_path, "{type: code_repos, paths: [repos]}")), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    assert any("hello from a clone" in t for t in _texts(out, tok))


def test_strict_build_over_a_repository_with_empty_files_succeeds(tmp_path):
    repo = tmp_path / "repos" / "pkg"
    for sub in ("a", "b", "c"):
        (repo / sub).mkdir(parents=True)
        (repo / sub / "__init__.py").write_text("")
    (repo / "m.py").write_text("def f():\n    return 1\n" * 20)
    (repo / "m.cpython-311.pyc").write_bytes(b"\x00\x01binary")
    out = tmp_path / "out"
    proc = run_cli("build", str(_recipe(tmp_path, "{type: code_repos, paths: [repos]}")), "--out", str(out),
                   "--strict")
    assert proc.returncode == 0, proc.stderr
    assert manifest_data(out)["ledger"]["src"]["notes"] == {"binary": 1, "empty_file": 3}


def test_a_folder_of_txt_files_gives_rows_in_the_text_reader(tmp_path):
    (tmp_path / "pydoc").mkdir()
    for i in range(5):
        (tmp_path / "pydoc" / f"topic{i}.txt").write_text(f"Topic {i}. " + "Some documentation prose. " * 30)
    out = tmp_path / "out"
    proc = run_cli("build", str(_recipe(tmp_path, "{type: text, paths: [pydoc]}")), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    manifest = manifest_data(out)
    assert manifest["ledger"]["src"]["docs"]["read"] == 5 and manifest["ledger"]["src"]["notes"] == {}
    assert sum(s["rows"] for s in manifest["streams"]) > 0


def test_an_fsspec_memory_input_builds_like_a_local_one(tmp_path):
    fs = fsspec.filesystem("memory")
    records = "".join(json.dumps({"id": f"m{i}", "text": f"In-memory record {i}. " * 30}) + "\n" for i in range(6))
    fs.pipe("/hostile-bucket/short/a.jsonl", records.encode())
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "a.jsonl").write_text(records)
    try:
        outs = {}
        for name, path in (("mem", "memory://hostile-bucket/short"), ("file", f"file://{tmp_path}/local")):
            outs[name] = tmp_path / f"out-{name}"
            proc = run_cli("build", str(_recipe(tmp_path, f"{{type: text, paths: ['{path}']}}")),
                           "--out", str(outs[name]))
            assert proc.returncode == 0, proc.stderr
    finally:
        fs.rm("/hostile-bucket", recursive=True)
    streams = [manifest_data(o)["streams"] for o in outs.values()]
    assert streams[0] == streams[1] and sum(s["tokens"] for s in streams[0]) > 0


def test_a_remote_scheme_without_its_package_is_one_line(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("build", str(_recipe(tmp_path, "{type: text, paths: ['s3://bucket/data/*.jsonl']}")),
                   "--out", str(out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "sources[src].reader.paths[0]: 's3://bucket/data/*.jsonl': Install s3fs" in lines[0]
    assert not out.exists()
