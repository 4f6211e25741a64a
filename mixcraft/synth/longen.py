"""Scoring a file of generated responses with LonGen's length-following score (textops.longen_score).

Each JSONL line holds a response (or a chat sample, whose last assistant message is used), a
constraint type (about, above, below, range) and the constraint text, as in LonGen.jsonl:
{"type": "about", "constraint": "about 2000 words", "response": "..."}.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from mixcraft.errors import UserError
from mixcraft.synth.textops import count_words, longen_range, longen_score

_NUMBER = re.compile(r"\d[\d,]*")


def constraint_range(kind: str, constraint: str) -> tuple[float, float]:
    """[lo, hi] words for a constraint such as ("about", "about 2,000 words") or ("range", "500-800")."""
    numbers = [float(n.replace(",", "")) for n in _NUMBER.findall(constraint)]
    if kind == "range":
        if len(numbers) < 2:
            raise ValueError(f"range constraint {constraint!r} needs two numbers")
        return numbers[0], numbers[1]
    if not numbers:
        raise ValueError(f"constraint {constraint!r} has no number")
    return longen_range(kind, numbers[0])


def _response_text(obj: dict[str, Any], field: str) -> str | None:
    if isinstance(obj.get(field), str):
        return obj[field]
    assistant = [
        m.get("content")
        for m in obj.get("messages") or []
        if isinstance(m, dict) and m.get("role") == "assistant"
    ]
    return assistant[-1] if assistant and isinstance(assistant[-1], str) else None


def score_file(
    path: Path, *, response_field: str, type_field: str, constraint_field: str
) -> dict[str, dict[str, float]]:
    """Mean score per constraint type and overall: {"about": {"n": 10, "mean": 0.87}, ...}."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    sums: dict[str, list[float]] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            text = _response_text(obj, response_field)
            if text is None:
                raise ValueError(f"no '{response_field}' string and no assistant message")
            lo, hi = constraint_range(str(obj[type_field]), str(obj[constraint_field]))
        except (json.JSONDecodeError, KeyError, ValueError, TypeError, AttributeError) as exc:
            raise UserError(
                f"{path}:{lineno}: cannot score this line ({exc}); each line needs '{response_field}', "
                f"'{type_field}' (about/above/below/range) and '{constraint_field}' (see --*-field options)"
            ) from None
        sums.setdefault(str(obj[type_field]), []).append(longen_score(count_words(text), lo, hi))
    if not sums:
        raise UserError(f"{path}: no lines to score")
    every = [s for scores in sums.values() for s in scores]
    result = {kind: {"n": len(v), "mean": sum(v) / len(v)} for kind, v in sorted(sums.items())}
    result["overall"] = {"n": len(every), "mean": sum(every) / len(every)}
    return result
