"""The demo corpus (recipes/demo.yaml, fetched by `python -m mixcraft.demo_data`) as text, for
the benchmarks. Two document granularities of the same text:

- `demo_documents()`: what the demo recipe's readers yield: a code repository is one document
  (ProLong's concatenation per repository), a book chapter or a doc page is one;
- `demo_files()`: the same text with each repository cut back into its files, so the work of
  the largest repository (SQLAlchemy: 53M of the 82M characters) can be shared by workers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from mixcraft.build.load import load_recipe
from mixcraft.core.ledger import Ledger
from mixcraft.readers import make_reader

ROOT = Path(__file__).resolve().parent.parent
DEMO_RECIPE = ROOT / "recipes" / "demo.yaml"
# The code_repos reader's default file header (mixcraft/readers/code_repos.py), after "\n\n".
FILE_HEADER = re.compile(r"(?:^|\n\n)--- (.+?) ---\n")


def demo_documents() -> list[tuple[str, str, str]]:
    """(source, doc id, text) for every document the demo recipe's readers yield, in order."""
    recipe = load_recipe(DEMO_RECIPE)
    docs = []
    for source in recipe.sources:
        reader = make_reader(source.name, source.reader, Ledger(source.name))
        docs += [(source.name, str(d.id), d.text) for d in reader.read(0, 1)]
    return docs


def demo_files() -> list[tuple[str, str]]:
    """(doc id, text): repositories split back into files; other documents as they are."""
    out = []
    for source, doc_id, text in demo_documents():
        if source != "code_repos":
            out.append((doc_id, text))
            continue
        parts = FILE_HEADER.split(text)  # ["", path1, body1, path2, body2, ...]
        out += [(f"{doc_id}/{p}", body) for p, body in zip(parts[1::2], parts[2::2], strict=True)]
    return out


def write_jsonl_shards(docs: list[tuple[str, str]], folder: Path, n_files: int) -> list[Path]:
    """Documents into `n_files` JSONL files of about equal size (largest first, each to the
    lightest file), so that one build task per file gives workers equal work."""
    folder.mkdir(parents=True, exist_ok=True)
    loads = [0] * n_files
    assign: list[list[int]] = [[] for _ in range(n_files)]
    for i in sorted(range(len(docs)), key=lambda i: (-len(docs[i][1]), i)):
        k = loads.index(min(loads))
        assign[k].append(i)
        loads[k] += len(docs[i][1])
    paths = []
    for k, members in enumerate(assign):
        path = folder / f"part-{k:03d}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for i in sorted(members):
                f.write(json.dumps({"id": docs[i][0], "text": docs[i][1]}) + "\n")
        paths.append(path)
    return paths


def text_recipe(name: str, paths: list[Path], *, seq_len: int, tasks: int, sources: list[dict] | None = None) -> dict:
    """A recipe dict over JSONL files: by default one source packing whole documents greedily."""
    base = {"reader": {"type": "text", "paths": [str(p) for p in paths]}, "tasks": tasks}
    sources = sources or [{"name": "files", "proportion": 1.0}]
    return {"name": name, "seed": 0, "seq_len": seq_len, "sources": [base | s for s in sources]}
