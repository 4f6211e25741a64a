"""A small real corpus for mixture tests, made from what every Python install has on disk:
standard-library packages as code repositories, pydoc's topic pages as books, and docstrings
as short documents and as chat answers. Built once per test session in a temp folder."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path
from typing import Any

import yaml

STDLIB = Path(json.__file__).resolve().parent.parent
CODE_PACKAGES = ("json", "tomllib", "wsgiref", "concurrent", "zoneinfo", "xmlrpc")
MIN_DOC_CHARS = 200


def _docstrings(limit: int) -> list[tuple[str, str]]:
    """(qualified name, docstring) of stdlib modules, classes and functions, in file order."""
    found = []
    for path in sorted(STDLIB.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        nodes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef))]
        for node in nodes:
            doc = ast.get_docstring(node)
            if doc and len(doc) >= MIN_DOC_CHARS:
                found.append((f"{path.stem}.{getattr(node, 'name', '')}".rstrip("."), doc))
                if len(found) >= limit:
                    return found
    return found


def make_corpus(root: Path) -> dict[str, Path]:
    """Write the corpus under `root`; returns the path of each part."""
    code = root / "code"
    for pkg in CODE_PACKAGES:
        shutil.copytree(STDLIB / pkg, code / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    import pydoc_data.topics as topics

    books = root / "books"
    books.mkdir()
    pages = [f"{name}\n{'=' * len(name)}\n\n{text}" for name, text in sorted(topics.topics.items())]
    for i in range(6):  # six "books" of about 17K tokens each
        (books / f"book{i}.txt").write_text("\n\n".join(pages[i::6]), encoding="utf-8")
    thin = root / "thin"  # one short book: a source that cannot fill its budget
    thin.mkdir()
    (thin / "thin.txt").write_text("\n\n".join(pages[:6]), encoding="utf-8")
    topics_jsonl = root / "topics.jsonl"  # one record per topic page: 100 to 10K tokens, for length buckets
    topics_jsonl.write_text("".join(json.dumps({"id": f"topic-{i}", "text": p}) + "\n" for i, p in enumerate(pages)),
                            encoding="utf-8")
    docs = _docstrings(1500)
    short = root / "short.jsonl"
    short.write_text("".join(json.dumps({"id": n, "text": d}) + "\n" for n, d in docs), encoding="utf-8")
    chat = root / "chat.jsonl"
    chat.write_text("".join(json.dumps({"id": f"chat-{n}", "messages": [
        {"role": "user", "content": f"What does `{n}` in Python's standard library do?"},
        {"role": "assistant", "content": d}]}) + "\n" for n, d in docs[:600]), encoding="utf-8")
    return {"code": code, "books": books, "thin": thin, "topics": topics_jsonl, "short": short, "chat": chat}


def source(name: str, rtype: str, path: Path, **extra: Any) -> dict[str, Any]:
    return {"name": name, "reader": {"type": rtype, "paths": [str(path)]}, **extra}


def write_recipe(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def build_recipe(recipe_path: Path, out: Path):
    """Build in-process (datatrove's local executor, 2 workers) and return the manifest."""
    from mixcraft.build.load import load_recipe
    from mixcraft.build.run import BuildOptions, build

    return build(load_recipe(recipe_path), out, BuildOptions(workers=2, show_progress=False))
