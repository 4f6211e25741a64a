"""A small corpus with known copies, the recipe over it, and the two dedups to compare.

Texts are the Python language reference's topics (real English prose, `pydoc_data.topics`).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from pydoc_data.topics import topics

from mixcraft.build.load import load_recipe
from mixcraft.build.prepare import run_dedup
from mixcraft.core.outdir import OutLayout
from mixcraft.core.recipe import Recipe

REPO = Path(__file__).resolve().parents[2]
PROSE = sorted((k for k in topics if len(topics[k].split()) > 300), key=lambda k: -len(topics[k]))


def replaced(text: str, share: float, *, tag: str, at_start: bool = False) -> str:
    """The text with `share` of its words, at its end (or start), replaced by new words."""
    words = text.split()
    k = int(len(words) * share)
    new = [f"{tag}{i}" for i in range(k)]
    return " ".join(new + words[k:] if at_start else words[:len(words) - k] + new)


def chain(text: str) -> tuple[str, str, str]:
    """A ~ B ~ C with C not similar to A at threshold 0.8 (measured: 0.875, 0.839, 0.741)."""
    b = replaced(text, 0.14, tag="x")
    return text, b, replaced(b, 0.14, tag="y", at_start=True)


def copies_corpus(scale: int = 1) -> dict[str, list[tuple[str, str]]]:
    """Two sources with exact copies (within a task, across tasks and sources), near copies
    (95 % the same words), texts too short for an n-gram, and empty text; no chains. `scale`
    repeats the pattern over more topics (distinct texts each time)."""
    web, forum = [], []
    for i in range(scale):
        a, b, c, d = (topics[PROSE[(4 * i + j) % len(PROSE)]] for j in range(4))
        tag = f"s{i}w"  # distinct near copies per repetition
        web += [(f"a{i}", a), (f"b{i}", b), (f"short{i}", "too few words"), (f"a-again{i}", a)]
        forum += [(f"f-a{i}", a), (f"f-near-b{i}", replaced(b, 0.05, tag=tag)), (f"f-c{i}", c),
                  (f"f-empty{i}", ""), (f"f-short{i}", "too few words"), (f"f-near-c{i}", replaced(c, 0.05, tag=tag + "c")),
                  (f"f-d{i}", d), (f"f-near-b-again{i}", replaced(b, 0.05, tag=tag))]
    return {"web": web, "forum": forum}


RECIPE = """\
name: dedup
seq_len: 256
dedup: {dedup}
sources:
"""
SOURCE = """\
  - name: {name}
    reader: {{type: text, paths: [{paths}]}}
    proportion: {share}
    tasks: {tasks}
"""


def write_recipe(folder: Path, corpus: dict[str, list[tuple[str, str]]], *, tasks: int = 2, files: int = 2,
                 dedup: str = "{exact: true, minhash: {threshold: 0.8}}") -> Recipe:
    """The corpus as JSONL files, document i of a source in its file i % `files` (a task reads
    every `tasks`-th file), and a recipe deduplicating it."""
    folder.mkdir(parents=True, exist_ok=True)
    text = RECIPE.format(dedup=dedup)
    for name, docs in corpus.items():
        paths = [folder / f"{name}-{k}.jsonl" for k in range(files)]
        for k, path in enumerate(paths):
            path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in docs[k::files]))
        text += SOURCE.format(name=name, share=1 / len(corpus), tasks=tasks, paths=", ".join(p.name for p in paths))
    (folder / "r.yaml").write_text(text)
    return load_recipe(folder / "r.yaml")


def verdicts(out: Path) -> dict[str, dict]:
    """Every verdicts file of a build folder, by `source/task.json`."""
    folder = OutLayout(out).dedup_dir
    return {f"{p.parent.name}/{p.name}": json.loads(p.read_text())
            for p in sorted(folder.glob("*/*.json")) if not p.parent.name.startswith("_")}


def stages(recipe: Recipe, out: Path, **kw) -> dict[str, dict]:
    run_dedup(recipe, OutLayout(out), limit=kw.pop("limit", None), **kw)
    return verdicts(out)


def peer(recipe: Recipe, out: Path, limit: int | None = None) -> dict[str, dict]:
    """The single-process dedup the stages replaced (benchmarks/dedup.py keeps it as the peer)."""
    spec = importlib.util.spec_from_file_location("dedup_bench", REPO / "benchmarks" / "dedup.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.peer_run_dedup(recipe, OutLayout(out), limit=limit)
    return verdicts(out)
