"""code_repos: git clones, folders, archives, the documented file order, and hostile inputs."""

from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLICK = REPO / ".cache" / "demo" / "code" / "click-8.1.7.tar.gz"


def _headers(text: str) -> list[str]:
    return re.findall(r"^--- (.+) ---$", text, flags=re.MULTILINE)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t"})


def test_git_clone_gives_tracked_files_readme_first_binary_counted(tmp_path, read_source):
    repo = tmp_path / "repos" / "tiny"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "b.py").write_text("def b():\n    return 2\n")
    (repo / "src" / "a.py").write_text("def a():\n    return 1\n")
    (repo / "README.md").write_text("# tiny\nA tiny project.\n")
    (repo / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (repo / ".gitignore").write_text("build/\n")
    (repo / "build").mkdir()
    (repo / "build" / "out.py").write_text("IGNORED = True\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "init")
    (repo / "untracked.py").write_text("UNTRACKED = True\n")

    docs, (ledger,) = read_source({"type": "code_repos", "paths": [str(repo.parent)]})
    assert len(docs) == 1
    doc = docs[0]
    assert _headers(doc.text) == ["README.md", ".gitignore", "src/a.py", "src/b.py"]
    assert "IGNORED" not in doc.text and "UNTRACKED" not in doc.text
    assert doc.text.startswith("--- README.md ---\n# tiny\n")
    assert doc.metadata["repo"] == "tiny" and doc.metadata["n_files"] == 4
    assert doc.metadata["languages"] == {"py": 2, "md": 1, "none": 1}
    assert doc.metadata["size_bytes"] == len(doc.text.encode())
    assert ledger.notes["binary"] == 1 and ledger.docs_read == 1


def test_real_sdist_is_one_document_in_documented_order(tmp_path, read_source):
    if not CLICK.is_file():
        pytest.skip(f"{CLICK} absent (run `make demo` once to fetch the demo corpus)")
    (tmp_path / "code").mkdir()
    os.symlink(CLICK, tmp_path / "code" / CLICK.name)  # a symlinked top-level entry is counted, not read
    (tmp_path / "code2").mkdir()
    (tmp_path / "code2" / CLICK.name).write_bytes(CLICK.read_bytes())
    docs, (ledger,) = read_source({"type": "code_repos", "paths": [str(tmp_path / "code2")]})
    assert len(docs) == 1
    paths = _headers(docs[0].text)
    assert paths[0] == "README.rst"
    assert paths[1:] == sorted(paths[1:])  # then by path
    assert "src/click/core.py" in paths and "docs/_static/click-logo.png" not in paths
    with tarfile.open(CLICK) as tf:
        pngs = [m for m in tf.getnames() if m.endswith((".png", ".jpg"))]
    assert pngs and ledger.notes["binary"] == len(pngs)
    assert docs[0].metadata["repo"] == "click-8.1.7"
    core = tarfile.open(CLICK).extractfile("click-8.1.7/src/click/core.py").read().decode()
    assert "--- src/click/core.py ---\n" + core in docs[0].text


def test_tar_with_traversal_and_absolute_members_reads_nothing_outside(tmp_path, read_source):
    outside = tmp_path / "secret.txt"
    outside.write_text("TOP SECRET\n")
    repos = tmp_path / "repos"
    repos.mkdir()
    with tarfile.open(repos / "evil-1.0.tar.gz", "w:gz") as tf:
        for name, data in [("evil-1.0/README", b"evil readme\n"), ("evil-1.0/pkg/mod.py", b"X = 1\n"),
                           ("evil-1.0/../../secret.txt", b"TRAVERSAL\n"), ("/etc/passwd_copy", b"ABSOLUTE\n")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("evil-1.0/link")
        link.type, link.linkname = tarfile.SYMTYPE, str(outside)
        tf.addfile(link)
    docs, (ledger,) = read_source({"type": "code_repos", "paths": [str(repos)]})
    assert len(docs) == 1
    assert "TRAVERSAL" not in docs[0].text and "ABSOLUTE" not in docs[0].text and "SECRET" not in docs[0].text
    assert ledger.notes["unsafe_path"] == 2 and ledger.notes["symlink"] == 1
    assert any("../../secret.txt" in w for w in ledger.examples["unsafe_path"])
    assert outside.read_text() == "TOP SECRET\n" and not (tmp_path / "evil-1.0").exists()  # nothing extracted


def test_zip_symlink_member_is_counted_not_read(tmp_path, read_source):
    repos = tmp_path / "repos"
    repos.mkdir()
    with zipfile.ZipFile(repos / "z.zip", "w") as zf:
        zf.writestr("z/README.md", "zip readme\n")
        info = zipfile.ZipInfo("z/link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    docs, (ledger,) = read_source({"type": "code_repos", "paths": [str(repos)]})
    assert _headers(docs[0].text) == ["README.md"] and ledger.notes["symlink"] == 1


def test_symlink_loop_and_escape_are_counted_never_followed(tmp_path, read_source):
    outside = tmp_path / "outside.py"
    outside.write_text("OUTSIDE = 1\n")
    repo = tmp_path / "repos" / "r"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "ok.py").write_text("OK = 1\n")
    os.symlink(repo / "loop_b", repo / "loop_a")
    os.symlink(repo / "loop_a", repo / "loop_b")
    os.symlink(outside, repo / "escape.py")
    os.symlink(repo, repo / "pkg" / "self_dir")  # a folder link back to the root: a cycle if followed
    os.symlink(repo / "pkg" / "ok.py", repo / "inside.py")
    docs, (ledger,) = read_source({"type": "code_repos", "paths": [str(repo.parent)]})
    assert _headers(docs[0].text) == ["pkg/ok.py"] and "OUTSIDE" not in docs[0].text
    assert ledger.notes["symlink_loop"] == 2 and ledger.notes["symlink_escapes_root"] == 1
    assert ledger.notes["symlink"] == 2  # the folder link and the inside file link


def test_skip_rules_globs_header_separator(tmp_path, read_source):
    repo = tmp_path / "repos" / "r"
    (repo / "node_modules" / "x").mkdir(parents=True)
    (repo / "node_modules" / "x" / "i.js").write_text("vendored\n")
    (repo / "src").mkdir()
    (repo / "src" / "main.py").write_text("print('hi')\n")
    (repo / "src" / "gen_pb2.py").write_text("generated\n")
    (repo / "src" / "auto.py").write_text("# Code generated by tool. DO NOT EDIT.\nX=1\n")
    (repo / "src" / "big.py").write_text("x" * 200)
    (repo / "src" / "latin1.py").write_bytes("caf\xe9 = 1\n".encode("latin-1"))
    (repo / "src" / "empty.py").write_text("")
    (repo / "notes.txt").write_text("notes\n")
    (repo / "poetry.lock").write_text("lock\n")
    cfg = {"type": "code_repos", "paths": [str(repo.parent)], "include": ["src/*", "notes.txt"],
           "exclude": ["notes.txt"], "max_file_bytes": 100, "header": "# file: {path}\n", "separator": "\n#---\n"}
    docs, (ledger,) = read_source(cfg)
    assert docs[0].text == "# file: src/main.py\nprint('hi')\n"
    assert dict(ledger.notes) == {"vendored": 1, "generated": 2, "too_large": 1, "invalid_utf8": 1,
                                  "empty_file": 1, "excluded": 1, "lock_file": 1}


def test_unreadable_file_is_counted(tmp_path, read_source, monkeypatch):
    import mixcraft.readers.code_repos as cr

    repo = tmp_path / "repos" / "r"
    repo.mkdir(parents=True)
    (repo / "a.py").write_text("A = 1\n")
    (repo / "locked.py").write_text("LOCKED = 1\n")
    real = cr.read_regular

    def read_regular(path, limit):  # root reads a chmod-000 file anyway, so simulate the kernel's refusal
        if path.name == "locked.py":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, limit)

    monkeypatch.setattr(cr, "read_regular", read_regular)
    docs, (ledger,) = read_source({"type": "code_repos", "paths": [str(repo.parent)]})
    assert _headers(docs[0].text) == ["a.py"] and ledger.notes["unreadable"] == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a chmod 000 file; covered by the simulated refusal")
def test_chmod_000_file_is_counted(tmp_path, read_source):
    repo = tmp_path / "repos" / "r"
    repo.mkdir(parents=True)
    (repo / "a.py").write_text("A = 1\n")
    (repo / "locked.py").write_text("LOCKED = 1\n")
    (repo / "locked.py").chmod(0)
    docs, (ledger,) = read_source({"type": "code_repos", "paths": [str(repo.parent)]})
    assert ledger.notes["unreadable"] == 1


def test_strict_counts_repository_policy_and_stops_at_a_broken_archive(tmp_path, read_source):
    """--strict is usable on real repositories: an empty or binary file inside one is policy,
    counted; a repository that cannot be read at all is still one error line."""
    from mixcraft.errors import UserError

    repo = tmp_path / "repos" / "r"
    repo.mkdir(parents=True)
    (repo / "a.bin").write_bytes(b"\x00\x01")
    (repo / "empty.py").write_text("")
    (repo / "b.py").write_text("B = 1\n")
    docs, (ledger,) = read_source({"type": "code_repos", "paths": [str(repo.parent)]}, strict=True)
    assert _headers(docs[0].text) == ["b.py"]
    assert ledger.notes == {"binary": 1, "empty_file": 1}
    (repo.parent / "broken.tar.gz").write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    with pytest.raises(UserError, match=r"broken\.tar\.gz: .*: corrupt archive \(run without --strict"):
        read_source({"type": "code_repos", "paths": [str(repo.parent)]}, strict=True, name="again")
