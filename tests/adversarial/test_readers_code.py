"""Hostile code repositories: malicious git clones, archive escapes and bombs, odd files and
names. Each case asserts the exact outcome: the ledger reason, and that nothing outside the
roots is read and nothing is executed."""

from __future__ import annotations

import io
import os
import socket
import struct
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest
from readerhelp import peak_rss_mib, read_source

PASSWD = Path("/etc/passwd")
SECRET = "root:x:0:0"  # the first line of /etc/passwd on every Linux


def _git(repo: Path, *args: str) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(repo.parent), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-C", str(repo), *args],
                   check=True, capture_output=True, env=env)


def _clone(root: Path, files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True)
    _git(root, "init", "-q")
    for rel, text in (files or {"README.md": "# r\n", "m.py": "M = 1\n"}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "c")
    return root


def _read(tmp_path: Path, **cfg):
    docs, (ledger,) = read_source({"type": "code_repos", "paths": [str(tmp_path / "repos")], **cfg}, tmp_path)
    return docs, ledger


def _headers(doc) -> list[str]:
    return [line[4:-4] for line in doc.text.splitlines() if line.startswith("--- ") and line.endswith(" ---")]


# -- git clones -----------------------------------------------------------------------------

def test_fsmonitor_and_hooks_of_a_clone_never_run(tmp_path, monkeypatch):
    repo = _clone(tmp_path / "repos" / "evil")
    marker = tmp_path / "PWNED"
    with open(repo / ".git" / "config", "a") as f:
        f.write(f"[core]\n\tfsmonitor = touch {marker}\n\thooksPath = {tmp_path}\n"
                f"[include]\n\tpath = {PASSWD}\n")
    (tmp_path / "post-index-change").write_text(f"#!/bin/sh\ntouch {marker}\n")
    (tmp_path / "post-index-change").chmod(0o755)

    def no_process(*a, **k):
        raise AssertionError(f"a process was started: {a}")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    docs, ledger = _read(tmp_path)
    assert not marker.exists()
    assert _headers(docs[0]) == ["README.md", "m.py"] and ledger.notes == {}


def test_index_path_with_dotdot_is_counted_not_read(tmp_path):
    repo = _clone(tmp_path / "repos" / "r")
    oid = subprocess.run(["git", "-C", str(repo), "hash-object", "-w", "m.py"], capture_output=True,
                         text=True, check=True).stdout.strip()
    index = (repo / ".git" / "index").read_bytes()
    # Rename the entry "m.py" to "../../../../../../etc/passwd" by rebuilding the index by hand.
    _write_index(repo, [("README.md", oid), ("../../../../../../../etc/passwd", oid)])
    assert index != (repo / ".git" / "index").read_bytes()
    docs, ledger = _read(tmp_path)
    assert _headers(docs[0]) == ["README.md"] and SECRET not in docs[0].text
    assert ledger.notes == {"unsafe_path": 1}


def _write_index(repo: Path, entries: list[tuple[str, str]]) -> None:
    """A version 2 index of regular files (stat data zeroed), with a valid SHA-1 checksum."""
    import hashlib

    body = struct.pack(">4sLL", b"DIRC", 2, len(entries))
    for path, oid in sorted(entries):
        name = path.encode()
        entry = struct.pack(">10L", 0, 0, 0, 0, 0, 0, 0o100644, 0, 0, 0) + bytes.fromhex(oid)
        entry += struct.pack(">H", min(len(name), 0xFFF)) + name
        entry += b"\0" * (8 - (len(entry) % 8))
        body += entry
    (repo / ".git" / "index").write_bytes(body + hashlib.sha1(body).digest())


def test_tracked_path_through_a_linked_folder_never_leaves_the_clone(tmp_path):
    repo = _clone(tmp_path / "repos" / "r")
    (repo / "etc").symlink_to("/etc")
    oid = "0" * 40
    _write_index(repo, [("README.md", oid), ("etc/passwd", oid)])
    docs, ledger = _read(tmp_path)
    assert SECRET not in docs[0].text and ledger.notes == {"symlink_escapes_root": 1}


@pytest.mark.parametrize("kind", ["gitdir_file", "git_symlink", "index_symlink", "garbage", "huge_count"])
def test_a_foreign_or_broken_git_dir_is_counted_and_the_tree_walked(tmp_path, kind):
    outside = _clone(tmp_path / "outside", {"secret.py": "SECRET = 1\n"})
    repo = tmp_path / "repos" / "r"
    repo.mkdir(parents=True)
    (repo / "main.py").write_text("MAIN = 1\n")
    reason = {"gitdir_file": "git_dir_not_followed", "git_symlink": "git_dir_not_followed",
              "index_symlink": "git_index_missing", "garbage": "git_index_unreadable",
              "huge_count": "git_index_unreadable"}[kind]
    if kind == "gitdir_file":
        (repo / ".git").write_text(f"gitdir: {outside / '.git'}\n")
    elif kind == "git_symlink":
        (repo / ".git").symlink_to(outside / ".git")
    else:
        (repo / ".git").mkdir()
        if kind == "index_symlink":
            (repo / ".git" / "index").symlink_to(outside / ".git" / "index")
        elif kind == "garbage":
            (repo / ".git" / "index").write_bytes(os.urandom(4096))
        else:
            (repo / ".git" / "index").write_bytes(struct.pack(">4sLL", b"DIRC", 2, 2**31) + b"\0" * 64)
    docs, ledger = _read(tmp_path)
    assert "main.py" in _headers(docs[0]) and "secret.py" not in docs[0].text
    assert ledger.notes[reason] == 1


def test_a_tracked_file_missing_from_the_checkout_is_counted(tmp_path):
    repo = _clone(tmp_path / "repos" / "r")
    (repo / "m.py").unlink()
    docs, ledger = _read(tmp_path)
    assert _headers(docs[0]) == ["README.md"] and ledger.notes == {"missing_file": 1}


@pytest.mark.timeout(20)
def test_fifo_and_socket_in_a_repository_are_never_opened(tmp_path):
    repo = _clone(tmp_path / "repos" / "r")
    (repo / "m.py").unlink()
    os.mkfifo(repo / "m.py")  # tracked path, now a FIFO: opening it for reading would block
    plain = tmp_path / "repos" / "plain"
    plain.mkdir()
    (plain / "a.py").write_text("A = 1\n")
    os.mkfifo(plain / "pipe.py")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(plain / "s.sock"))
    try:
        docs, ledger = _read(tmp_path)
    finally:
        sock.close()
    assert [_headers(d) for d in docs] == [["a.py"], ["README.md"]]
    assert ledger.notes == {"not_a_file": 3}


def test_symlinked_file_to_passwd_inside_a_repository(tmp_path):
    repo = tmp_path / "repos" / "r"
    repo.mkdir(parents=True)
    (repo / "a.py").write_text("A = 1\n")
    (repo / "passwd.py").symlink_to(PASSWD)
    (repo / "loop").symlink_to(repo / "loop")
    docs, ledger = _read(tmp_path)
    assert SECRET not in docs[0].text
    assert ledger.notes == {"symlink_escapes_root": 1, "symlink_loop": 1}


# -- archives -------------------------------------------------------------------------------

def _tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w:gz") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as tf:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tf.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tf.addfile(info, io.BytesIO(m[1]))
    return path


def _special(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize("member,reason", [
    (("pkg/../../../etc/cron.d/x", b"* * * * * root sh\n"), "unsafe_path"),
    (("/etc/passwd", b"root:x:0:0\n"), "unsafe_path"),
    (("C:\\Windows\\evil.py", b"x\n"), "unsafe_path"),
    (_special("pkg/passwd.py", tarfile.SYMTYPE, "/etc/passwd"), "symlink"),
    (_special("pkg/hard.py", tarfile.LNKTYPE, "/etc/passwd"), "symlink"),
    (_special("pkg/dev", tarfile.CHRTYPE), "not_a_file"),
    (_special("pkg/fifo", tarfile.FIFOTYPE), "not_a_file"),
])
def test_tar_escapes_are_counted_and_nothing_is_written(tmp_path, member, reason):
    _tar(tmp_path / "repos" / "pkg-1.0.tar.gz", [("pkg/m.py", b"M = 1\n"), member])
    before = set(tmp_path.rglob("*"))
    docs, ledger = _read(tmp_path)
    assert _headers(docs[0]) == ["m.py"] and SECRET not in docs[0].text
    assert ledger.notes == {reason: 1}
    assert set(tmp_path.rglob("*")) - before <= set((tmp_path / "work").rglob("*")) | {tmp_path / "work"}


@pytest.mark.parametrize("name,reason", [("../escape.py", "unsafe_path"), ("/abs.py", "unsafe_path"),
                                         ("C:/x.py", "unsafe_path"), ("link.py", "symlink")])
def test_zip_escapes_are_counted(tmp_path, name, reason):
    path = tmp_path / "repos" / "z.zip"
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("m.py", "M = 1\n")
        info = zipfile.ZipInfo(name)
        if reason == "symlink":
            info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd" if reason == "symlink" else "EVIL = 1\n")
    docs, ledger = _read(tmp_path)
    assert _headers(docs[0]) == ["m.py"] and ledger.notes == {reason: 1}


def test_zip_member_with_a_bad_crc_is_a_corrupt_archive(tmp_path):
    path = tmp_path / "repos" / "z.zip"
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("m.py", "M = 1\n" * 10)
    data = bytearray(path.read_bytes())
    data[data.index(b"M = 1")] = ord("N")  # the stored bytes no longer match the CRC
    path.write_bytes(bytes(data))
    docs, ledger = _read(tmp_path)
    assert docs == [] and ledger.docs_dropped == {"corrupt_archive": 1}
    assert "\n" not in ledger.examples["corrupt_archive"][0]


def test_gzip_bomb_member_is_too_large_and_never_inflated_into_memory(tmp_path):
    """A 256 MB member of zeros compresses 1000x; its declared size rules it out before reading."""
    path = tmp_path / "repos" / "bomb-1.0.tar.gz"
    path.parent.mkdir(parents=True)
    with tarfile.open(path, "w:gz", compresslevel=9) as tf:
        info = tarfile.TarInfo("bomb-1.0/zeros.py")
        info.size = 256 << 20
        tf.addfile(info, io.BytesIO(bytes(info.size)))
        small = tarfile.TarInfo("bomb-1.0/ok.py")
        small.size = 6
        tf.addfile(small, io.BytesIO(b"OK = 1"))
    assert path.stat().st_size < (256 << 20) / 500
    code = f"""
from readerhelp import read_source
from pathlib import Path
docs, (ledger,) = read_source({{"type": "code_repos", "paths": [{str(path.parent)!r}]}}, Path({str(tmp_path)!r}))
assert [d.metadata["n_files"] for d in docs] == [1] and dict(ledger.notes) == {{"too_large": 1}}, ledger.notes
"""
    assert peak_rss_mib(code) < 200


def test_too_many_archive_members_skip_the_repository(tmp_path, monkeypatch):
    import mixcraft.readers.code_repos as cr

    monkeypatch.setattr(cr, "MAX_ARCHIVE_MEMBERS", 50)
    _tar(tmp_path / "repos" / "many.tar", [(f"many/f{i}.py", b"x = 1\n") for i in range(51)], mode="w")
    path = tmp_path / "repos" / "many.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(51):
            zf.writestr(f"f{i}.py", "x = 1\n")
    docs, ledger = _read(tmp_path)
    assert docs == [] and ledger.docs_dropped == {"too_many_members": 2}


@pytest.mark.parametrize("data", [b"", b"not an archive at all", "truncated"])
def test_damaged_archives_are_one_counted_skip(tmp_path, data):
    path = _tar(tmp_path / "repos" / "pkg-1.0.tar.gz", [(f"pkg/f{i}.py", os.urandom(3000).hex().encode())
                                                       for i in range(20)])
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2] if data == "truncated" else data)
    docs, ledger = _read(tmp_path)
    assert docs == [] and ledger.docs_dropped == {"corrupt_archive": 1}
    assert all("\n" not in e for e in ledger.examples["corrupt_archive"])


def test_empty_archive_is_an_empty_repository(tmp_path):
    path = tmp_path / "repos" / "e.zip"
    path.parent.mkdir(parents=True)
    zipfile.ZipFile(path, "w").close()
    docs, ledger = _read(tmp_path)
    assert docs == [] and ledger.docs_dropped == {"empty_repo": 1}


# -- names ----------------------------------------------------------------------------------

def test_names_of_invalid_utf8_bytes_are_counted_not_put_in_a_header(tmp_path):
    root = tmp_path / "repos"
    (root / "r").mkdir(parents=True)
    (root / "r" / "ok.py").write_text("OK = 1\n")
    os.makedirs(os.path.join(os.fsencode(root), b"bad\xff-repo"))
    open(os.path.join(os.fsencode(root / "r"), b"caf\xe9.py"), "w").write("X = 1\n")
    _tar(root / "t.tar", [(os.fsdecode(b"t/na\xefve.py"), b"N = 1\n"), ("t/fine.py", b"F = 1\n")], mode="w")
    docs, ledger = _read(tmp_path)
    assert [_headers(d) for d in docs] == [["ok.py"], ["fine.py"]]
    assert ledger.notes == {"invalid_utf8_name": 3}
    for doc in docs:
        doc.text.encode("utf-8")  # what the tokenizer and the shards need


def test_newline_and_header_lookalike_names_stay_inside_their_header(tmp_path):
    repo = tmp_path / "repos" / "r"
    repo.mkdir(parents=True)
    (repo / "a\n--- fake.py ---\n.py").write_text("A = 1\n")
    docs, ledger = _read(tmp_path)
    assert docs[0].metadata["n_files"] == 1 and ledger.notes == {}


# -- repository policy ----------------------------------------------------------------------

def test_a_huge_repository_is_capped_in_bounded_memory(tmp_path):
    """The issue's case at 1/3 scale: 130 files of 990 KB (129 MB). Without a cap every file was
    held at once (2.7 GB peak for 400 files; 453 MiB for these 130); with the 64 MiB default this
    measured 275 MiB, and stays there however many files follow."""
    repo = tmp_path / "repos" / "huge"
    repo.mkdir(parents=True)
    line = b"value = compute(alpha, beta, gamma)  # a line of hand-written code\n"
    body = line * (990_000 // len(line))
    for i in range(130):
        (repo / f"f{i:03d}.py").write_bytes(body)
    code = f"""
from readerhelp import read_source
from pathlib import Path
docs, (ledger,) = read_source({{"type": "code_repos", "paths": [{str(repo.parent)!r}]}}, Path({str(tmp_path)!r}))
kept = docs[0].metadata["n_files"]
assert kept == (64 << 20) // {len(body)} and ledger.notes["repo_too_large"] == 130 - kept, ledger.notes
"""
    assert peak_rss_mib(code) < 340


def test_generated_rule_keeps_hand_written_files_that_mention_generation(tmp_path):
    repo = tmp_path / "repos" / "webframework"
    repo.mkdir(parents=True)
    files = {
        "docs/releases/5.0.txt": "5.0 release notes\n\nThe admin's changelist is generated by the view.\n",
        "docs/intro/tutorial01.txt": "Your project skeleton is auto-generated by startproject.\n",
        "conf/project_template/settings.py-tpl": '"""\nGenerated by \'django-admin startproject\'.\n"""\n',
        "tests/test_ids.py": "def test_autogenerated():\n    assert 1\n",
        "api/service_pb2.py": "# Generated by the protocol buffer compiler.  DO NOT EDIT!\n",
        "gen/types.go": "// Code generated by stringer; DO NOT EDIT.\npackage gen\n",
        "ext/_speedups.c": "/* Generated by Cython 3.0.10 */\n",
        "static/app.js": "var a=1;" * 400,
    }
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    docs, ledger = _read(tmp_path)
    assert _headers(docs[0]) == ["conf/project_template/settings.py-tpl", "docs/intro/tutorial01.txt",
                                 "docs/releases/5.0.txt", "tests/test_ids.py"]
    assert ledger.notes == {"generated": 4}


def test_strict_build_on_a_real_repository_with_empty_files(tmp_path):
    repo = tmp_path / "repos" / "r"
    repo.mkdir(parents=True)
    (repo / "m.py").write_text("M = 1\n")
    for i in range(50):
        (repo / f"pkg{i}").mkdir()
        (repo / f"pkg{i}" / "__init__.py").write_text("")
    (repo / "logo.png").write_bytes(b"\x89PNG\x00")
    (repo / "locale.po").write_text('msgid ""\n')
    docs, (ledger,) = read_source({"type": "code_repos", "paths": [str(repo.parent)]}, tmp_path, strict=True)
    assert docs[0].metadata["n_files"] == 1
    assert ledger.notes == {"empty_file": 50, "binary": 1, "locale": 1}
