"""One evaluation: validation loss per source, loss by position, and the task suite.

`evaluate` returns a dict with exactly the keys `validation`, `position_loss`, `tasks` and
`meta`. All scoring goes through a `Scorer` (see scoring.py); the work is cut into items (a
forward pass each) that ranks share round-robin, and their sums meet in one all-reduce, so
every rank returns the same result.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mixcraft.eval.config import EvalConfig
from mixcraft.eval.data import EvalManifest, RowRef, RowSource, eval_rows, haystack_pieces, row_arrays
from mixcraft.eval.haystack import Haystack, Tokenizer
from mixcraft.eval.scoring import (
    Generator,
    Packed,
    Scorer,
    Scores,
    Share,
    Tally,
    batch_greedily,
    bucket_of,
    pack_documents,
    position_edges,
    sample_arrays,
)
from mixcraft.eval.tasks import TASKS, Kit, Sample, make_samples
from mixcraft.eval.user_tasks import run_user_tasks

HAYSTACK_MIN_TOKENS = 262_144  # pool to cut windows from: enough for four distinct 64K contexts


@dataclass
class Item:
    """One forward pass: how to build its batch, and where its scores go."""

    label: str
    build: Callable[[], Packed]
    consume: Callable[[Packed, Scores, Tally], None]


def evaluate(scorer: Scorer, *, tok: Tokenizer, cfg: EvalConfig, model_context: int, data: EvalManifest | None,
             checkpoint: str, generator: Generator | None = None, share: Share | None = None,
             progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Run `cfg` against `scorer`; the four-key result (identical on every rank)."""
    share = share or Share()
    started, t0 = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    lengths = cfg.resolved_lengths(model_context)
    source = RowSource()
    refs, split = eval_rows(data, cfg.validation_rows) if data is not None else ([], None)
    budget = cfg.tokens_per_forward or max(lengths + ([data.seq_len] if data is not None else []))
    tally = Tally()
    items: list[Item] = []
    edges = position_edges(data.seq_len, cfg.position_bucket) if data is not None else []
    if cfg.validation and refs:
        items += validation_items(refs, source, edges, budget, tally)
    haystack = build_haystack(tok, data, refs, source, max(lengths))
    samples = {t: make_samples(Kit(tok, haystack), t, lengths=lengths, depths=list(cfg.depths),
                               per_cell=cfg.samples, seed=cfg.seed) for t in cfg.synthetic}
    items += task_items([s for t in cfg.synthetic for s in samples[t]], cfg.depths, budget, tally)
    mine = share.mine(len(items))
    for done, index in enumerate(mine):
        item = items[index if index is not None else 0]  # padding: a collective forward, scores dropped
        batch = item.build()
        scores = scorer(batch)
        if index is not None:
            item.consume(batch, scores, tally)
        if progress is not None:
            progress(done + 1, len(mine), item.label)
    sums = tally.reduce(share.all_reduce)
    tasks = {t: task_result(t, sums, lengths, cfg.depths) for t in cfg.synthetic}
    if cfg.jsonl:
        tasks.update(run_user_tasks(cfg.jsonl, generator, tok, lengths=lengths, max_new_tokens=cfg.max_new_tokens))
    meta = {"checkpoint": checkpoint, "tokenizer": _tokenizer_meta(tok, data), "lengths": lengths,
            "depths": list(cfg.depths), "samples_per_cell": cfg.samples, "seed": cfg.seed,
            "haystack": haystack.origin, "data": str(data.out) if data is not None else None,
            "forward_passes": len(items), "ranks": share.world,
            "time": {"started": started.isoformat(timespec="seconds"),
                     "seconds": round(time.perf_counter() - t0, 3)}}
    return {"validation": validation_result(sums, refs, split, cfg, data),
            "position_loss": position_result(sums, refs, edges, cfg, data),
            "tasks": tasks, "meta": meta}


def build_haystack(tok: Tokenizer, data: EvalManifest | None, refs: list[RowRef], source: RowSource,
                   max_length: int) -> Haystack:
    """The build's own text from the evaluation rows (more rows of the same subsets when those
    are few), or RULER's noise sentences without --data."""
    if data is None:
        return Haystack.noise(tok)
    want = max(HAYSTACK_MIN_TOKENS, 2 * max_length)
    pool_refs = list(refs)
    if len(pool_refs) * data.seq_len < want:  # too few evaluation rows: read more of each stream
        extra, _ = eval_rows(data, max(1, -(-want // (data.seq_len * max(1, len(data.streams))))))
        have = set(pool_refs)
        pool_refs += [r for r in extra if r not in have]
    split = "validation rows" if data.has_validation else "the last rows of each stream"
    return Haystack(tok, haystack_pieces(data, pool_refs, source, max_tokens=want),
                    origin=f"document pieces of {data.out} ({split})")


# -- validation loss and loss by position -------------------------------------------------------


def validation_items(refs: list[RowRef], source: RowSource, edges: list[int], budget: int, tally: Tally
                     ) -> list[Item]:
    for ref in refs:
        for what in ("nll", "n", "rows"):
            tally.register(("val", ref.source, ref.stream, what))
        for k in range(len(edges) - 1):
            tally.register(("pos", ref.source, k, "nll"))
            tally.register(("pos", ref.source, k, "n"))
    groups = batch_greedily([edges[-1]] * len(refs), budget)
    return [_validation_item([refs[i] for i in g], source, edges) for g in groups]


def _validation_item(group: list[RowRef], source: RowSource, edges: list[int]) -> Item:
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def build() -> Packed:
        rows[:] = [row_arrays(source.read(ref)) for ref in group]
        return pack_documents(rows)

    def consume(batch: Packed, scores: Scores, tally: Tally) -> None:
        start = 0
        nll, hit_mask = scores.nll.double().cpu().numpy(), batch.targets.numpy() != -100
        for ref, (ids, _, positions) in zip(group, rows, strict=True):
            sl = slice(start, start + len(ids))
            valid = hit_mask[sl]
            tally.add(("val", ref.source, ref.stream, "nll"), nll[sl][valid].sum())
            tally.add(("val", ref.source, ref.stream, "n"), valid.sum())
            tally.add(("val", ref.source, ref.stream, "rows"), 1)
            # The loss at a target is charged to the predicted token's position in its document:
            # the number of tokens the model could attend to when predicting it.
            buckets = bucket_of(positions[valid] + 1, edges)
            for k in range(len(edges) - 1):
                at = buckets == k
                tally.add(("pos", ref.source, k, "nll"), nll[sl][valid][at].sum())
                tally.add(("pos", ref.source, k, "n"), at.sum())
            start += len(ids)

    return Item(f"validation {group[0].stream}", build, consume)


def validation_result(sums: dict[tuple, float], refs: list[RowRef], split: str | None, cfg: EvalConfig,
                      data: EvalManifest | None) -> dict[str, Any]:
    if data is None or not cfg.validation:
        why = "no --data given" if data is None else "validation is off in the eval settings"
        return {"split": None, "note": f"{why}: no validation loss", "sources": {}}
    note = ("loss on the build's validation subsets (documents held out of training)" if split == "validation"
            else f"the build has no validation split: loss on the last {cfg.validation_rows or 'all'} rows of each "
                 "stream, which the model may have trained on")
    sources: dict[str, Any] = {}
    for ref in refs:
        src = sources.setdefault(ref.source, {"loss": None, "tokens": 0, "rows": 0, "streams": {}})
        if ref.stream in src["streams"]:
            continue
        nll, n = sums[("val", ref.source, ref.stream, "nll")], sums[("val", ref.source, ref.stream, "n")]
        rows = int(sums[("val", ref.source, ref.stream, "rows")])
        src["streams"][ref.stream] = {"loss": nll / n if n else None, "tokens": int(n), "rows": rows}
    for src in sources.values():
        streams = src["streams"].values()
        n = sum(s["tokens"] for s in streams)
        src["tokens"], src["rows"] = n, sum(s["rows"] for s in streams)
        src["loss"] = sum(s["loss"] * s["tokens"] for s in streams if s["tokens"]) / n if n else None
    return {"split": split, "note": note, "rows_per_stream": cfg.validation_rows, "sources": sources}


def position_result(sums: dict[tuple, float], refs: list[RowRef], edges: list[int], cfg: EvalConfig,
                    data: EvalManifest | None) -> dict[str, Any]:
    basis = ("mean loss of the tokens whose position in their document piece (the tokens the model could "
             "attend to) falls in [edges[k], edges[k+1])")
    if data is None or not cfg.validation:
        return {"basis": basis, "edges": [], "labels": [], "sources": {},
                "note": "no --data given" if data is None else "validation is off in the eval settings"}
    out: dict[str, Any] = {}
    for name in dict.fromkeys(r.source for r in refs):
        n = [sums[("pos", name, k, "n")] for k in range(len(edges) - 1)]
        nll = [sums[("pos", name, k, "nll")] for k in range(len(edges) - 1)]
        out[name] = {"loss": [a / b if b else None for a, b in zip(nll, n, strict=True)],
                     "tokens": [int(b) for b in n]}
    labels = [f"{_k(a)}-{_k(b)}" for a, b in zip(edges, edges[1:], strict=False)]
    return {"basis": basis, "edges": edges, "labels": labels, "sources": out}


def _k(n: int) -> str:
    return f"{n // 1024}K" if n and n % 1024 == 0 else str(n)


# -- synthetic tasks ----------------------------------------------------------------------------


def _cell(s: Sample, depths: tuple[float, ...]) -> tuple[str, int, int]:
    return s.task, s.length, depths.index(s.depth) if s.depth is not None else -1


def task_items(samples: list[Sample], depths: tuple[float, ...], budget: int, tally: Tally) -> list[Item]:
    for s in samples:
        for what in ("hit", "n", "nll", "answer_tokens"):
            tally.register((*_cell(s, depths), what))
    groups = batch_greedily([len(s.context) + len(s.answer) for s in samples], budget)
    return [_task_item([samples[i] for i in g], depths) for g in groups]


def _task_item(group: list[Sample], depths: tuple[float, ...]) -> Item:
    def build() -> Packed:
        return pack_documents([sample_arrays(s.context, s.answer) for s in group])

    def consume(batch: Packed, scores: Scores, tally: Tally) -> None:
        start = 0
        for s in group:
            n = len(s.context) + len(s.answer)
            at = slice(start + len(s.context) - 1, start + n - 1)  # the positions that predict the answer
            key = _cell(s, depths)
            tally.add((*key, "hit"), bool(scores.hit[at].all()))
            tally.add((*key, "n"), 1)
            tally.add((*key, "nll"), float(scores.nll[at].double().sum()))
            tally.add((*key, "answer_tokens"), len(s.answer))
            start += n

    label = f"{group[0].task} {group[0].length:,} tokens"
    return Item(label, build, consume)


def task_result(task: str, sums: dict[tuple, float], lengths: list[int], depths: tuple[float, ...]
                ) -> dict[str, Any]:
    depth_keys = list(enumerate(depths)) if TASKS[task].uses_depth else [(-1, None)]
    cells, by_length = [], {}
    for length in lengths:
        hits = n = 0.0
        for k, depth in depth_keys:
            c_hit, c_n = sums[(task, length, k, "hit")], sums[(task, length, k, "n")]
            c_tok = sums[(task, length, k, "answer_tokens")]
            cells.append({"length": length, "depth": depth, "accuracy": c_hit / c_n, "n": int(c_n),
                          "answer_nll": sums[(task, length, k, "nll")] / c_tok})
            hits, n = hits + c_hit, n + c_n
        by_length[str(length)] = hits / n
    total_hits, total_n = sum(c["accuracy"] * c["n"] for c in cells), sum(c["n"] for c in cells)
    return {"kind": "synthetic", "scoring": "greedy answer, exact (teacher-forced argmax at every answer token)",
            "accuracy": total_hits / total_n, "n": total_n, "by_length": by_length, "cells": cells}


def _tokenizer_meta(tok: Tokenizer, data: EvalManifest | None) -> dict[str, Any]:
    describe = getattr(tok, "describe", None)
    meta = describe() if callable(describe) else {"name": type(tok).__name__}
    if data is not None:
        meta["build"] = data.tokenizer.get("name")
    return meta
