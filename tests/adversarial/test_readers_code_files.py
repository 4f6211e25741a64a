"""Hostile file-level code rows (code_files): malformed rows, damaged data files and
intermediate files, hostile names; exact ledger outcomes."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from readerhelp import read_source, total

from mixcraft.errors import UserError


def _row(repo, path, content) -> dict:
    return {"max_stars_repo_name": repo, "max_stars_repo_path": path, "content": content}


def _jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _read(tmp_path, folder, **cfg):
    return read_source({"type": "code_files", "paths": [str(folder)], **cfg}, tmp_path, n_tasks=2)


def test_malformed_rows_are_counted_by_reason(tmp_path):
    rows = [_row("o/r", "ok.py", "OK = 1\n"),
            {"max_stars_repo_path": "no_repo.py", "content": "x"},
            _row("o/r", "", "empty path"),
            _row("o/r", "int.py", 42),
            _row(["o/r"], "list_repo.py", "x"),
            '{"max_stars_repo_name": "o/r", "max_stars_repo_path": "s.py", "content": "bad \\ud800"}',
            "{truncated json",
            _row("o/r", "none.py", None)]
    docs, ledgers = _read(tmp_path, _jsonl(tmp_path / "d" / "a.jsonl", rows).parent)
    assert [d.metadata["repo"] for d in docs] == ["o/r"] and docs[0].metadata["n_files"] == 1
    assert total(ledgers) == {"missing_repo": 2, "missing_path": 1, "missing_content": 2, "invalid_utf8": 1}
    assert total(ledgers, "docs_dropped") == {"malformed_json": 1}


def test_damaged_data_files_are_counted_and_the_rest_is_grouped(tmp_path):
    folder = tmp_path / "d"
    _jsonl(folder / "good.jsonl", [_row("o/r", "a.py", "A = 1\n")])
    (folder / "cut.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(
        json.dumps(_row("o/r", "b.py", "B = 1\n")).encode() * 100)[:-8])
    (folder / "junk.parquet").write_bytes(b"PAR1 not really parquet PAR1")
    pq.write_table(pa.table({"max_stars_repo_name": ["o/r"], "max_stars_repo_path": ["c.py"],
                             "content": ["C = 1\n"]}), folder / "fine.parquet")
    docs, ledgers = _read(tmp_path, folder)
    assert [d.metadata["n_files"] for d in docs] == [2]
    assert total(ledgers) == {"corrupt_file": 1}
    assert total(ledgers, "docs_dropped") == {"corrupt_parquet": 1}


def test_duplicate_paths_and_hostile_repo_names(tmp_path):
    rows = [_row("o/r", "same.py", f"V = {i}\n") for i in range(500)]
    long_name = "o/" + "x" * 10_000
    rows += [_row(long_name, "a.py", "A = 1\n"), _row("ø/ünï cødé 🚀", "b.py", "B = 1\n"),
             _row("../../etc", "passwd", "not a path on disk\n")]
    docs, ledgers = _read(tmp_path, _jsonl(tmp_path / "d" / "a.jsonl", rows).parent)
    by_repo = {d.metadata["repo"]: d for d in docs}
    assert sorted(by_repo) == sorted(["o/r", long_name, "ø/ünï cødé 🚀", "../../etc"])
    assert by_repo["o/r"].text == "--- same.py ---\nV = 0\n"  # the first in (path, content) order
    assert total(ledgers) == {"duplicate_path": 499}
    assert not (tmp_path / "etc").exists() and not (tmp_path.parent / "etc" / "passwd").exists()


def test_a_huge_repository_in_rows_is_capped(tmp_path):
    rows = [_row("big/repo", f"f{i:03d}.py", f"# file {i}\n" + "x = 1\n" * 1000) for i in range(50)]
    docs, ledgers = _read(tmp_path, _jsonl(tmp_path / "d" / "a.jsonl", rows).parent, max_repo_bytes=60_000)
    assert docs[0].metadata["n_files"] == 9 and total(ledgers)["repo_too_large"] == 41


def test_a_damaged_partition_file_is_one_error_line(tmp_path):
    folder = _jsonl(tmp_path / "d" / "a.jsonl", [_row(f"o/r{i}", "a.py", "A = 1\n") for i in range(10)]).parent
    read_source({"type": "code_files", "paths": [str(folder)], "partitions": 1}, tmp_path)
    chunk = next((tmp_path / "work" / "src").glob("part-00000/*.parquet"))
    chunk.write_bytes(chunk.read_bytes()[:40])
    with pytest.raises(UserError, match=r"part-00000: a partition file of the code_files pass is damaged .*"
                                        r"delete .*/work/src and re-run the build"):
        read_source({"type": "code_files", "paths": [str(folder)], "partitions": 1}, tmp_path)
