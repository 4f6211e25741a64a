"""n-gram decontamination against a user-given evaluation set.

    filters:
      - {type: decontaminate, eval_set: evals/gsm8k_test.jsonl, n: 13, text_field: text}

A training document that shares any word n-gram with an evaluation sample is dropped as
`contaminated` (GPT-3 and Llama used 13-grams). The eval set is a JSONL/JSON (optionally .gz
or .zst) or Parquet file of records with a `text_field`, or a .txt file with one sample per
line.

The matching is datatrove's: its `NGramsDecontFilter` runs as is, reading an index of n-gram
hashes. We write that index ourselves, with the same normalization (`simplify_text`), word
tokenizer, n-gram joining and hash function as datatrove's `NGramsDecontIndexer`, because
that indexer only takes its samples from lighteval tasks (and needs lighteval installed). The
index is built once per (eval file content, n, field) under OUT/.mixcraft/decontam/.
"""

from __future__ import annotations

import hashlib

# datatrove's dependency check calls importlib.metadata without importing it; in a process
# that has not imported it yet the word tokenizer fails with an AttributeError.
import importlib.metadata  # noqa: F401
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np

from mixcraft.core.ledger import Ledger
from mixcraft.core.records import get_field, iter_jsonl, iter_parquet
from mixcraft.errors import UserError
from mixcraft.schema import Invalid, Positive, RelPath

EVAL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".jsonl.zst", ".json.zst", ".parquet", ".txt")
DEFAULT_N = 13


@dataclass(frozen=True, kw_only=True)
class DecontaminateConfig:
    eval_set: RelPath
    n: Annotated[int, Positive] = DEFAULT_N
    text_field: str = "text"

    def __post_init__(self) -> None:
        if not self.eval_set.endswith(EVAL_SUFFIXES):
            raise Invalid(f"{Path(self.eval_set).name}: unsupported format (use one of {', '.join(EVAL_SUFFIXES)})",
                          "eval_set")

    def input_problems(self) -> list[tuple[str, str]]:
        if not Path(self.eval_set).is_file():
            return [("eval_set", f"file {self.eval_set!r} not found (relative paths are taken against the "
                                 "recipe's folder)")]
        return []


def eval_samples(path: Path, text_field: str) -> list[str]:
    """The eval set's texts. A bad line here is an error, not a skip: a silently shortened
    eval set would let contamination through."""
    if path.name.endswith(".txt"):
        return [line for line in path.read_text(encoding="utf-8", errors="strict").splitlines() if line.strip()]
    strict = Ledger("eval_set", strict=True)
    rows = iter_parquet(path, strict) if path.name.endswith(".parquet") else iter_jsonl(path, strict)
    texts = []
    for n, record in rows:
        text = get_field(record, text_field)
        if not isinstance(text, str):
            raise UserError(f"{path}:{n}: eval sample has no string field {text_field!r} (set `text_field`)")
        texts.append(text)
    return texts


def build_index(eval_set: str, n: int, text_field: str, work_dir: Path) -> Path:
    """The folder holding `<name>.index.hashes` for datatrove's NGramsDecontFilter."""
    from datatrove.pipeline.decont.n_grams import NGramsDecontConfig
    from datatrove.utils.hashing import create_hash_func
    from datatrove.utils.text import ngrams, simplify_text
    from datatrove.utils.typeshelper import Languages
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    path = Path(eval_set)
    key = hashlib.sha256(path.read_bytes() + f"|{n}|{text_field}".encode()).hexdigest()[:16]
    folder = work_dir / "decontam" / key
    index = folder / f"{path.name.split('.')[0]}.index.hashes"
    if index.is_file():
        return folder
    config = NGramsDecontConfig(n_grams=n)
    tokenizer, hash_func = load_word_tokenizer(Languages.english), create_hash_func(config.hash_config)
    hashes: set[int] = set()
    samples = eval_samples(path, text_field)
    too_short = 0
    for text in samples:
        words = tokenizer.word_tokenize(simplify_text(text, config.norm_config))
        too_short += len(words) < n
        hashes.update(hash_func(" ".join(g)) for g in ngrams(words, n))
    if not hashes:
        raise UserError(f"{path}: no eval sample has {n} words, so nothing can be matched; lower the filter's `n`")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = index.with_suffix(f".tmp{os.getpid()}")  # tasks may build it at once; the rename is atomic
    np.array(sorted(hashes), dtype=config.hash_config.np_descr).tofile(tmp)
    os.replace(tmp, index)
    (folder / "about.json").write_text(json.dumps({"eval_set": str(path), "n": n, "samples": len(samples),
                                                   "samples_shorter_than_n": too_short, "ngrams": len(hashes)}))
    return folder


def make_decontam_filter(cfg: DecontaminateConfig, work_dir: Path):
    from datatrove.pipeline.decont.n_grams import NGramsDecontConfig, NGramsDecontFilter

    folder = build_index(cfg.eval_set, cfg.n, cfg.text_field, work_dir)
    return NGramsDecontFilter(index_folder=str(folder), config=NGramsDecontConfig(n_grams=cfg.n))
