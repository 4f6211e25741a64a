"""The model as evaluation sees it, and the arithmetic of scores.

Evaluation never imports the trainer. A model is a `Scorer`: given a packed token stream
(documents delimited by `cu_seqlens`, positions restarting per document) and next-token
targets, it returns each scored target's negative log-likelihood and whether the model's
argmax equals it. `mixcraft.train.evaluate` adapts the trainer's Llama (sharded or not, any
attention backend) to this; a test can pass any function.

Why one forward pass scores a generation task exactly: greedy decoding emits the gold answer
if and only if, teacher-forced on context + gold answer, the argmax at every answer position
is the gold token. So the synthetic tasks never decode token by token, and short samples are
packed several to a forward pass (document masking keeps them apart).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

IGNORE = -100


@dataclass
class Packed:
    """Documents flattened into one stream of T tokens; `targets[t]` is the token to predict at t."""

    input_ids: Tensor  # (T,) int64
    position_ids: Tensor  # (T,) int64, restarting at 0 for every document
    cu_seqlens: Tensor  # (n_docs + 1,) int32
    max_seqlen: int
    targets: Tensor  # (T,) int64, IGNORE where nothing is scored

    @property
    def n_tokens(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass
class Scores:
    nll: Tensor  # (T,) float32, -log p(target); 0 where the target is IGNORE
    hit: Tensor  # (T,) bool, argmax == target; False where the target is IGNORE


class Scorer(Protocol):
    def __call__(self, batch: Packed) -> Scores: ...


class Generator(Protocol):
    """Greedy continuation of a prompt, at most `max_new_tokens`, decoded with a KV cache."""

    def __call__(self, prompt_ids: list[int], max_new_tokens: int) -> list[int]: ...


def pack_documents(docs: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Packed:
    """[(input_ids, targets, positions)] -> one Packed stream; each tuple's document pieces are
    given by where `positions` restarts at 0."""
    ids = np.concatenate([d[0] for d in docs])
    targets = np.concatenate([d[1] for d in docs])
    positions = np.concatenate([d[2] for d in docs])
    starts = np.flatnonzero(positions == 0)
    cu = np.append(starts, len(ids)).astype(np.int32)
    return Packed(torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(positions.astype(np.int64)),
                  torch.from_numpy(cu), int(np.diff(cu).max()), torch.from_numpy(targets.astype(np.int64)))


def sample_arrays(context: np.ndarray, answer: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A task sample as one document: targets only where the gold answer is predicted."""
    ids = np.concatenate([context, answer]).astype(np.int64)
    targets = np.full(len(ids), IGNORE, dtype=np.int64)
    targets[len(context) - 1: len(ids) - 1] = answer
    return ids, targets, np.arange(len(ids))


def batch_greedily(sizes: list[int], budget: int) -> list[list[int]]:
    """Consecutive indices grouped so each group's total size stays within `budget` (a group
    holds at least one item)."""
    groups: list[list[int]] = []
    total = budget + 1
    for i, size in enumerate(sizes):
        if total + size > budget:
            groups.append([])
            total = 0
        groups[-1].append(i)
        total += size
    return groups


def position_edges(row_tokens: int, first: int = 1024) -> list[int]:
    """Bucket edges 0, 1K, 2K, 4K, ... doubling, then `row_tokens` as the last edge."""
    edges, nxt = [0], first
    while nxt < row_tokens:
        edges.append(nxt)
        nxt *= 2
    return edges + [row_tokens]


def bucket_of(positions: np.ndarray, edges: list[int]) -> np.ndarray:
    """Index of the bucket [edges[k], edges[k+1]) each position falls in."""
    return np.searchsorted(np.asarray(edges), positions, side="right") - 1


class Tally:
    """Named float sums, registered up front in the same order on every rank, so the partial
    sums of all ranks add up with one all-reduce of one vector."""

    def __init__(self) -> None:
        self.index: dict[tuple, int] = {}
        self.values: list[float] = []

    def register(self, key: tuple) -> None:
        if key not in self.index:
            self.index[key] = len(self.values)
            self.values.append(0.0)

    def add(self, key: tuple, value: float) -> None:
        self.values[self.index[key]] += float(value)

    def reduce(self, all_reduce: Callable[[Tensor], Tensor] | None) -> dict[tuple, float]:
        vec = torch.tensor(self.values, dtype=torch.float64)
        if all_reduce is not None:
            vec = all_reduce(vec)
        return {key: float(vec[i]) for key, i in self.index.items()}


@dataclass
class Share:
    """This process's part of a distributed evaluation: it scores items rank, rank + world, ...
    `all_reduce` sums a float64 CPU vector over ranks (None in a single process)."""

    rank: int = 0
    world: int = 1
    all_reduce: Callable[[Tensor], Tensor] | None = None

    def mine(self, n_items: int) -> list[int | None]:
        """Item indices for this rank, padded with None to the same count on every rank: each
        forward of a sharded model is collective, so every rank must make as many."""
        per_rank = -(-n_items // self.world)
        return [i if i < n_items else None for i in range(self.rank, per_rank * self.world, self.world)]


# -- free-form answers (user JSONL tasks): SQuAD's normalisation --------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation and articles, collapse whitespace (SQuAD / HELMET)."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def exact_match(prediction: str, answers: list[str]) -> bool:
    return any(normalize_answer(prediction) == normalize_answer(a) for a in answers)


def substring_match(prediction: str, answers: list[str]) -> bool:
    pred = normalize_answer(prediction)
    return any(normalize_answer(a) in pred for a in answers if normalize_answer(a))
