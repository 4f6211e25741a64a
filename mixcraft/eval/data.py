"""What evaluation reads from a build: its manifest, its validation (or last) rows, its text.

`read_eval_manifest` reads the typed manifest (`core/manifest.py`) and keeps what evaluation
needs. A stream may carry `validation` (`OUT/<source>/<bucket>/val`), an MDS subset with the
training columns whose documents were held out of training. When no stream has one, the last
rows of each stream stand in, and the results say so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixcraft.core.manifest import read_manifest
from mixcraft.errors import UserError
from mixcraft.mds import SubsetReader

IGNORE = -100  # a target that is not scored (the trainer's ignore index)


@dataclass(frozen=True)
class EvalStream:
    source: str
    path: str  # "source/bucket", the training subset
    rows: int
    val_path: str | None  # "source/bucket/val" when the build held documents out
    val_rows: int


@dataclass(frozen=True)
class EvalManifest:
    out: Path
    seq_len: int
    tokenizer: dict[str, Any]  # name, file, file_sha256, vocab_size, backend
    streams: tuple[EvalStream, ...]

    @property
    def has_validation(self) -> bool:
        return any(s.val_path and s.val_rows for s in self.streams)


def read_eval_manifest(out: Path) -> EvalManifest:
    """The parts of OUT/manifest.json evaluation uses; a missing, foreign or edited one is a UserError."""
    m = read_manifest(Path(out))
    streams = tuple(EvalStream(source=s.source, path=s.path, rows=s.rows,
                               val_path=s.validation.path if s.validation else None,
                               val_rows=s.validation.rows if s.validation else 0) for s in m.streams)
    return EvalManifest(Path(out), m.seq_len, dataclasses.asdict(m.tokenizer), streams)


@dataclass(frozen=True)
class RowRef:
    """One row to score: which subset, which row number, and the stream it stands for."""

    source: str
    stream: str
    subset: Path
    row: int


def eval_rows(m: EvalManifest, rows_per_stream: int) -> tuple[list[RowRef], str]:
    """Rows for validation loss: each stream's validation subset (first `rows_per_stream` rows,
    all when 0), or, when the build held nothing out, its last `rows_per_stream` rows. Returns
    the rows and which split they come from ('validation' or 'last_rows')."""
    split = "validation" if m.has_validation else "last_rows"
    refs = []
    for s in m.streams:
        if split == "validation":
            if not (s.val_path and s.val_rows):
                continue
            n = s.val_rows if rows_per_stream == 0 else min(rows_per_stream, s.val_rows)
            refs += [RowRef(s.source, s.path, m.out / s.val_path, i) for i in range(n)]
        else:
            n = s.rows if rows_per_stream == 0 else min(rows_per_stream, s.rows)
            refs += [RowRef(s.source, s.path, m.out / s.path, i) for i in range(s.rows - n, s.rows)]
    return refs, split


class RowSource:
    """Reads rows by `RowRef`, one `SubsetReader` per subset (its decoded shard cached)."""

    def __init__(self) -> None:
        self._readers: dict[Path, SubsetReader] = {}

    def read(self, ref: RowRef) -> dict[str, Any]:
        if ref.subset not in self._readers:
            if not (ref.subset / "index.json").is_file():
                raise UserError(f"{ref.subset}/index.json is missing; the build output is incomplete "
                                "(re-run `mixcraft build`, then `mixcraft verify OUT`)")
            self._readers[ref.subset] = SubsetReader(ref.subset)
        return self._readers[ref.subset].row(ref.row)


def row_arrays(sample: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input_ids, next-token targets, position of each token in its document piece) of one row.

    The same rule as the trainer: no target across a document piece start (it has no
    in-document predecessor), none where the SFT `mask` is 0, none past the row end."""
    ids = np.asarray(sample["input_ids"]).astype(np.int64)
    spans = np.asarray(sample["indices"], dtype=np.int64).reshape(-1, 2)
    spans = spans[spans[:, 1] > spans[:, 0]]
    if not len(spans) or spans[0, 0] != 0 or spans[-1, 1] != len(ids) or \
            not np.array_equal(spans[1:, 0], spans[:-1, 1]):
        raise UserError(f"row from domain {sample.get('domain')!r}: `indices` spans do not tile the row; "
                        "run `mixcraft verify OUT`")
    labels = ids.copy()
    labels[spans[:, 0]] = IGNORE
    if sample.get("mask") is not None:
        labels[np.asarray(sample["mask"])[: len(ids)] == 0] = IGNORE
    targets = np.full(len(ids), IGNORE, dtype=np.int64)
    targets[:-1] = labels[1:]
    lens = spans[:, 1] - spans[:, 0]
    positions = np.arange(len(ids)) - np.repeat(spans[:, 0], lens)
    return ids, targets, positions


def haystack_pieces(m: EvalManifest, rows: list[RowRef], source: RowSource, *, max_tokens: int
                    ) -> list[np.ndarray]:
    """Document pieces (token ids) from `rows`, round-robin over streams so every source lends
    text, until `max_tokens` are gathered. Chat rows (with a `mask`) are skipped: their
    template tokens are not prose."""
    by_stream: dict[str, list[RowRef]] = {}
    for ref in rows:
        by_stream.setdefault(ref.stream, []).append(ref)
    queues = list(by_stream.values())
    pieces, total = [], 0
    while total < max_tokens and any(queues):
        for queue in queues:
            if not queue or total >= max_tokens:
                continue
            sample = source.read(queue.pop(0))
            if sample.get("mask") is not None:
                continue
            ids = np.asarray(sample["input_ids"]).astype(np.int64)
            for a, b in np.asarray(sample["indices"], dtype=np.int64).reshape(-1, 2):
                if b - a >= 16:  # a few-token tail of a document is no text to hide a needle in
                    pieces.append(ids[a:b])
                    total += int(b - a)
    return pieces
