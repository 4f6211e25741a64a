"""User tasks from JSONL: one record per line with `context`, `question` and `answers`.

HELMET-style data downloaded once can be run offline: the prompt is the context, a blank
line, `Question: ...` and `Answer:`; the model continues greedily (with a KV cache, so the
context is encoded once) for at most `max_new_tokens` tokens, cut at the first line break.
A record scores by exact match and by substring match against any of its answers, after
SQuAD's normalisation (lowercase, no punctuation, no articles).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mixcraft.errors import UserError
from mixcraft.eval.haystack import Tokenizer, encode
from mixcraft.eval.scoring import Generator, exact_match, substring_match

PROMPT = "{context}\n\nQuestion: {question}\nAnswer:"


def read_user_tasks(path: Path) -> list[dict[str, Any]]:
    """The records of one JSONL file, checked; a bad line is a UserError naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--tasks {path}: file not found (a user task is a JSONL file with context, question, "
                        "answers)")
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{n}: not valid JSON ({err.msg})") from None
        if not isinstance(rec, dict):
            raise UserError(f"{path}:{n}: expected an object with context, question, answers")
        for key in ("context", "question", "answers"):
            if key not in rec:
                raise UserError(f"{path}:{n}: missing key '{key}' (each line needs context, question, answers)")
        answers = [rec["answers"]] if isinstance(rec["answers"], str) else rec["answers"]
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            raise UserError(f"{path}:{n}: answers: expected a string or a non-empty list of strings")
        if not isinstance(rec["context"], str) or not isinstance(rec["question"], str):
            raise UserError(f"{path}:{n}: context and question must be strings")
        records.append({"context": rec["context"], "question": rec["question"], "answers": answers})
    if not records:
        raise UserError(f"{path}: no records (one JSON object per line)")
    return records


def length_bucket(n_tokens: int, lengths: list[int]) -> str:
    """The smallest evaluation length that holds the prompt, or '>L' beyond the longest."""
    return str(next((L for L in lengths if n_tokens <= L), f">{lengths[-1]}"))


def run_user_tasks(paths: list[str], generator: Generator | None, tok: Tokenizer, *, lengths: list[int],
                   max_new_tokens: int) -> dict[str, dict[str, Any]]:
    if generator is None:
        raise UserError(f"--tasks {paths[0]}: user JSONL tasks need generation, which `mixcraft eval` runs; "
                        "the trainer's eval: section takes synthetic tasks only")
    out = {}
    for path in paths:
        records = read_user_tasks(Path(path))
        rows = []
        for rec in records:
            prompt = encode(tok, PROMPT.format(context=rec["context"], question=rec["question"]))
            new = generator([int(t) for t in prompt], max_new_tokens)
            prediction = tok.decode(new).split("\n")[0].strip()
            rows.append({"bucket": length_bucket(len(prompt), lengths), "prediction": prediction,
                         "em": exact_match(prediction, rec["answers"]),
                         "sub": substring_match(prediction, rec["answers"])})
        out[Path(path).stem] = _summary(rows, path)
    return out


def _summary(rows: list[dict[str, Any]], path: str) -> dict[str, Any]:
    by_length: dict[str, dict[str, float]] = {}
    for bucket in dict.fromkeys(r["bucket"] for r in rows):
        mine = [r for r in rows if r["bucket"] == bucket]
        by_length[bucket] = {"exact_match": sum(r["em"] for r in mine) / len(mine),
                             "substring_match": sum(r["sub"] for r in mine) / len(mine), "n": len(mine)}
    return {"kind": "jsonl", "file": str(path),
            "scoring": "greedy generation with a KV cache, first line, SQuAD-normalised exact and substring match",
            "exact_match": sum(r["em"] for r in rows) / len(rows),
            "substring_match": sum(r["sub"] for r in rows) / len(rows), "n": len(rows), "by_length": by_length,
            "predictions": [r["prediction"] for r in rows]}
