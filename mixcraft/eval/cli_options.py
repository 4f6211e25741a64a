"""`mixcraft eval` flags -> an `EvalConfig`, checked by the same loader as the trainer's `eval:`."""

from __future__ import annotations

import time
from typing import Any

from mixcraft.errors import UserError
from mixcraft.eval.config import EvalConfig
from mixcraft.schema import Where, parse

PROGRESS_EVERY_S = 10.0


def parse_length(text: str) -> int:
    """'8K' -> 8192, '1M' -> 1048576, '4096' -> 4096."""
    t = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20}.get(t[-1:], 1)
    digits = t[:-1] if scale > 1 else t
    if not digits.isdigit() or int(digits) <= 0:
        raise UserError(f"--lengths: {text.strip()!r} is not a length (write 8K, 64K or 8192)")
    return int(digits) * scale


def parse_depth(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserError(f"--depths: {text.strip()!r} is not a number in [0, 1]") from None


def _items(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def eval_config(*, tasks: str | None, lengths: str | None, depths: str | None, samples: int | None,
                validation_rows: int | None, seed: int) -> EvalConfig:
    raw: dict[str, Any] = {"seed": seed}
    if tasks is not None:
        raw["tasks"] = _items(tasks)
    if lengths is not None:
        raw["lengths"] = [parse_length(t) for t in _items(lengths)]
    if depths is not None:
        raw["depths"] = [parse_depth(t) for t in _items(depths)]
    if samples is not None:
        raw["samples"] = samples
    if validation_rows is not None:
        raw["validation_rows"] = validation_rows
    return parse(EvalConfig, raw, Where("mixcraft eval"))


def progress_printer(console):
    """A progress callback that prints at most one line per 10 s (long GPU evaluations)."""
    state = {"last": time.perf_counter()}

    def progress(done: int, total: int, label: str) -> None:
        now = time.perf_counter()
        if now - state["last"] >= PROGRESS_EVERY_S or done == total:
            state["last"] = now
            console.print(f"eval: {done}/{total} forward passes ({label})", highlight=False, markup=False)

    return progress
