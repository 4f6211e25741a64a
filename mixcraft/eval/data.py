"""What evaluation reads from a build: its manifest, its validation (or last) rows, its text.

`read_eval_manifest` is the one place that parses OUT/manifest.json for evaluation, so it can
be pointed at the typed manifest later. A stream entry may carry
`"validation": {"path": "<source>/<bucket>/val", "rows": N, "tokens": N, "docs": N}`, an MDS
subset with the training columns whose documents were held out of training. When no stream
has one, the last rows of each stream stand in, and the results say so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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
    """Parse OUT/manifest.json into what evaluation needs; a missing or foreign file is a UserError."""
    out = Path(out)
    path = out / "manifest.json"
    if not path.is_file():
        raise UserError(f"--data {out}: no manifest.json here; give a `mixcraft build` output folder "
                        f"(e.g. out/demo after `make demo`)")
    try:
        raw = json.loads(path.read_text())
        streams = tuple(_stream(s) for s in raw["streams"])
        return EvalManifest(out, int(raw["seq_len"]), dict(raw.get("tokenizer") or {}), streams)
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path}: not a mixcraft manifest ({type(err).__name__}: {err}); "
                        "rebuild it with `mixcraft build`") from None


def _stream(s: dict[str, Any]) -> EvalStream:
    val = s.get("validation") or {}
    return EvalStream(source=str(s["source"]), path=str(s["path"]), rows=int(s["rows"]),
                      val_path=val.get("path"), val_rows=int(val.get("rows", 0)))


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
