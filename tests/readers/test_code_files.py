"""code_files: Stack-v1-style rows grouped into one document per repository."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from helpers import reader_config

FILES = {  # repo -> {path: content}
    "octo/alpha": {"README.md": "# alpha\n", "alpha/core.py": "def core():\n    pass\n",
                   "alpha/__init__.py": "from .core import core\n", "tests/test_core.py": "def test(): pass\n"},
    "octo/beta": {"beta.js": "module.exports = 1;\n", "package-lock.json": "{}\n"},
}


def _row(repo: str, path: str, content, lang: str = "Python") -> dict:
    return {"max_stars_repo_name": repo, "max_stars_repo_path": path, "content": content, "lang": lang}


def _write_dataset(root: Path) -> Path:
    """alpha's rows are split over a JSONL and a Parquet file; beta's sit in the Parquet file."""
    root.mkdir(parents=True)
    alpha = list(FILES["octo/alpha"].items())
    with open(root / "part-0.jsonl", "w") as f:
        for path, content in alpha[:2]:
            f.write(json.dumps(_row("octo/alpha", path, content)) + "\n")
        f.write("{broken json\n")
        f.write(json.dumps({"max_stars_repo_name": "octo/alpha", "content": "no path"}) + "\n")
    rows = [_row("octo/alpha", p, c) for p, c in alpha[2:]]
    rows += [_row("octo/beta", p, c, "JavaScript") for p, c in FILES["octo/beta"].items()]
    rows.append(_row("octo/alpha", "alpha/core.py", "def core():\n    pass\n"))  # the same path again
    pq.write_table(pa.Table.from_pylist(rows), root / "part-1.parquet")
    return root


def test_repo_split_across_files_is_one_document_in_code_repos_order(tmp_path, read_source):
    data = _write_dataset(tmp_path / "stack")
    cfg = {"type": "code_files", "paths": [str(data)], "lang_field": "lang", "partitions": 3}
    docs, ledgers = read_source(cfg, n_tasks=2)
    by_repo = {d.metadata["repo"]: d for d in docs}
    assert sorted(by_repo) == ["octo/alpha", "octo/beta"]

    # The same files as a folder, read by code_repos, give the same text: one shared order.
    tree = tmp_path / "trees" / "alpha"
    for path, content in FILES["octo/alpha"].items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_text(content)
    (ref,), _ = read_source({"type": "code_repos", "paths": [str(tree.parent)]}, name="ref")
    assert by_repo["octo/alpha"].text == ref.text
    assert by_repo["octo/alpha"].text.startswith("--- README.md ---\n# alpha\n")
    meta = by_repo["octo/alpha"].metadata
    assert meta["n_files"] == 4 and meta["languages"] == {"Python": 4}
    assert by_repo["octo/beta"].metadata["languages"] == {"JavaScript": 1}

    notes = sum((led.notes for led in ledgers), start=__import__("collections").Counter())
    dropped = sum((led.docs_dropped for led in ledgers), start=__import__("collections").Counter())
    assert notes["missing_path"] == 1 and notes["duplicate_path"] == 1 and notes["lock_file"] == 1
    assert dropped == {"malformed_json": 1}
    assert sum(led.docs_read for led in ledgers) == 3  # two repos + the malformed line


def test_partitions_bound_memory_and_hold_each_repo_once(tmp_path, read_source, monkeypatch):
    import mixcraft.readers.shuffle as cf

    monkeypatch.setattr(cf, "FLUSH_BYTES", 200)  # many small flushes: a repo spread over chunks
    root = tmp_path / "many"
    root.mkdir()
    rows = [_row(f"org/r{i % 7}", f"f{i:03d}.py", f"X{i} = {i}\n" * 5) for i in range(70)]
    for k in range(3):
        with open(root / f"s{k}.jsonl", "w") as f:
            for r in rows[k::3]:
                f.write(json.dumps(r) + "\n")
    docs, _ = read_source({"type": "code_files", "paths": [str(root)], "partitions": 4}, n_tasks=3)
    assert sorted(d.metadata["repo"] for d in docs) == [f"org/r{i}" for i in range(7)]
    assert all(d.metadata["n_files"] == 10 for d in docs)
    parts = sorted((tmp_path / "work" / "src").glob("part-*"))
    chunks = list((tmp_path / "work" / "src").glob("part-*/m*-c*.parquet"))
    assert len(parts) <= 4 and len(chunks) > len(parts)  # flushed many times
    seen = [r for p in parts for r in set(pq.read_table(p).column("repo").to_pylist())]
    assert len(seen) == len(set(seen)) == 7  # every repository lives in exactly one partition


def test_prepare_pass_is_reused_when_inputs_match(tmp_path):
    from mixcraft.core.ledger import Ledger
    from mixcraft.readers.code_files import CodeFilesReader

    data = _write_dataset(tmp_path / "stack")
    work = tmp_path / "work"
    cfg = reader_config({"type": "code_files", "paths": [str(data)]})
    CodeFilesReader("s", cfg, Ledger("s"), work).prepare(work, 1).run_here()
    stamp = (work / "done.json").stat().st_mtime_ns
    assert CodeFilesReader("s", cfg, Ledger("s"), work).prepare(work, 1) is None
    assert (work / "done.json").stat().st_mtime_ns == stamp


def test_hf_dataset_input(tmp_path, read_source):
    data = _write_dataset(tmp_path / "stack")
    cfg = {"type": "code_files", "dataset": "parquet", "data_files": [str(data / "part-1.parquet")],
           "where": {"lang": "JavaScript"}}
    docs, (ledger,) = read_source(cfg)
    assert [d.metadata["repo"] for d in docs] == ["octo/beta"]
    assert ledger.notes["not_selected"] == 3
