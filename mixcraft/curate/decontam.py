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
from pathlib import Path
from typing import Any

import numpy as np

from mixcraft.errors import UserError

EVAL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".jsonl.zst", ".json.zst", ".parquet", ".txt")
DEFAULT_N = 13
PARAMS = {"eval_set": str, "n": int, "text_field": str}


def check_decontam_config(ctx: Any, where: str, args: dict[str, Any], base: Path) -> None:
    from mixcraft.recipe import check_keys, recipe_relative

    check_keys(ctx, where, args, PARAMS, required=("eval_set",))
    path = recipe_relative(args["eval_set"], base)
    if not path.is_file():
        raise ctx.fail(f"{where}.eval_set", f"file {args['eval_set']!r} not found (resolved to {path}; "
                       "relative paths are resolved against the recipe's folder)")
    if not path.name.endswith(EVAL_SUFFIXES):
        raise ctx.fail(f"{where}.eval_set", f"{path.name}: unsupported format (use one of "
                       f"{', '.join(EVAL_SUFFIXES)})")
    if args.get("n", DEFAULT_N) < 1:
        raise ctx.fail(f"{where}.n", f"must be >= 1, got {args['n']}")
    args["eval_set"] = str(path.resolve())


def eval_samples(path: Path, text_field: str) -> list[str]:
    """The eval set's texts. A bad line here is an error, not a skip: a silently shortened
    eval set would let contamination through."""
    from mixcraft.core.ledger import Ledger
    from mixcraft.readers.text import get_field, iter_jsonl, iter_parquet

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


def make_decontam_filter(args: dict[str, Any], work_dir: Path):
    from datatrove.pipeline.decont.n_grams import NGramsDecontConfig, NGramsDecontFilter

    n = args.get("n", DEFAULT_N)
    folder = build_index(args["eval_set"], n, args.get("text_field", "text"), work_dir)
    return NGramsDecontFilter(index_folder=str(folder), config=NGramsDecontConfig(n_grams=n))
