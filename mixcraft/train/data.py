"""Read a mixcraft build output into packed training batches.

The mixture is one `streaming.Stream` per (source, bucket) subset, weighted by the manifest's
target proportions, in one `StreamingDataset`: deterministic for a seed and resumable
mid-epoch from the loader's `state_dict`. Streams are opened with `remote=` the build (a folder
or an fsspec URL) and `local=` a cache folder, because StreamingDataset writes decompressed
copies into its `local`: the build is only ever read. A batch flattens its rows into one token
stream the way ProLong's trainer does: `cu_seqlens` from the `indices` spans, no target across a
document start, and the `mask` column (SFT) applied.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mixcraft.core.manifest import parse_manifest
from mixcraft.errors import UserError
from mixcraft.train.loss import IGNORE


@dataclass(frozen=True)
class ShardDigest:
    """One shard file as the build wrote it (the manifest's `shards` entry)."""

    basename: str
    n_bytes: int
    sha1: str | None
    samples: int


@dataclass(frozen=True)
class StreamSpec:
    name: str  # "source/bucket", as in the manifest's `path`
    url: str  # the subset folder: a local path or an fsspec URL
    proportion: float
    rows: int
    shards: tuple[ShardDigest, ...]


@dataclass(frozen=True)
class Manifest:
    root: str  # data.path as given (folder or URL)
    seq_len: int
    vocab_size: int | None
    tokenizer: str
    tokenizer_file: str | None  # the tokenizer.json the build used (exported with the model)
    streams: tuple[StreamSpec, ...]
    digest: str  # sha1 of manifest.json: names the cache folder, so a rebuilt OUT never meets stale copies


def open_fs(url: str, where: str):
    """(fsspec filesystem, path inside it) for a folder or URL; a missing backend is one line."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as err:
        raise UserError(f"{where}: {url}: {err} (pip install the fsspec backend named there)") from None
    except ValueError as err:
        raise UserError(f"{where}: {url}: {err}") from None


def join_url(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def read_manifest(data_path: str | Path, where: str) -> Manifest:
    """Parse OUT/manifest.json (a folder or an fsspec URL); the one place that reads it.
    `where` names the config key that pointed here, for errors."""
    root = str(data_path)
    fs, base = open_fs(root, where)
    path = join_url(base, "manifest.json")
    try:
        text = fs.cat_file(path)
    except FileNotFoundError:
        raise UserError(f"{where}: {join_url(root, 'manifest.json')} not found; point data.path at a "
                        f"`mixcraft build` output (run `mixcraft build RECIPE --out {root}` first)") from None
    try:
        raw = json.loads(text)
    except ValueError as err:
        raise UserError(f"{join_url(root, 'manifest.json')}: not valid JSON ({err}); rebuild it with "
                        "`mixcraft build`") from None
    if not isinstance(raw, dict):
        raise UserError(f"{join_url(root, 'manifest.json')}: not a mixcraft manifest; rebuild it with `mixcraft build`")
    built = parse_manifest(raw, join_url(root, "manifest.json"))
    streams = tuple(StreamSpec(
        name=s.path, url=join_url(root, s.path), proportion=s.proportion, rows=s.rows,
        shards=tuple(ShardDigest(d.basename, d.bytes, d.hash, d.samples) for d in built.shards.get(s.path, [])))
        for s in built.streams)
    return Manifest(root=root, seq_len=built.seq_len, vocab_size=built.tokenizer.vocab_size,
                    tokenizer=built.tokenizer.name, tokenizer_file=built.tokenizer.file, streams=streams,
                    digest=hashlib.sha1(text).hexdigest())


def choose_streams(manifest: Manifest, proportions: dict[str, float] | None, where: str) -> list[StreamSpec]:
    """The streams to train on with their weights: the manifest's, or the config's override."""
    by_name = {s.name: s for s in manifest.streams}
    if proportions is not None:
        for name in proportions:
            if name not in by_name:
                raise UserError(f"{where}.{name}: no such stream in the manifest (have: {', '.join(by_name)})")
        weighted = [StreamSpec(s.name, s.url, proportions.get(s.name, 0.0), s.rows, s.shards)
                    for s in manifest.streams]
    else:
        weighted = list(manifest.streams)
    # Empty subsets and zero weights are left out: streaming rejects both.
    chosen = [s for s in weighted if s.proportion > 0 and s.rows > 0]
    if not chosen:
        raise UserError(f"{where}: no stream has rows and a positive proportion; check the build "
                        "(`mixcraft stats OUT`) or data.proportions")
    return chosen


@dataclass
class PackedBatch:
    """Rows flattened into one stream of T tokens; targets[t] is the label for predicting at t."""

    input_ids: Tensor  # (T,) int64
    targets: Tensor  # (T,) int64, -100 where there is nothing to predict
    position_ids: Tensor  # (T,) int64, restarting at 0 for every document piece
    cu_seqlens: Tensor  # (n_docs + 1,) int32
    max_seqlen: int
    n_rows: int
    sum_sq_doc_lens: int  # sum of len^2 over document pieces: the attention FLOPs under document masking

    @property
    def n_tokens(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device: torch.device) -> PackedBatch:
        return self._map(functools.partial(Tensor.to, device=device, non_blocking=True))

    def pin_memory(self) -> PackedBatch:
        """Called by the DataLoader (pin_memory=True on CUDA) so the copy to the GPU can be async."""
        return self._map(Tensor.pin_memory)

    def _map(self, fn) -> PackedBatch:
        return PackedBatch(fn(self.input_ids), fn(self.targets), fn(self.position_ids), fn(self.cu_seqlens),
                           self.max_seqlen, self.n_rows, self.sum_sq_doc_lens)

    def rows(self) -> Tensor:
        """(n_rows, 3, row_tokens) int32: ids, targets, positions per row; all a batch needs,
        in one fixed-shape tensor that collectives can move between ranks."""
        stacked = torch.stack([self.input_ids, self.targets, self.position_ids]).to(torch.int32)
        return stacked.view(3, self.n_rows, -1).transpose(0, 1).contiguous()


def batch_from_rows(rows: Tensor) -> PackedBatch:
    """Inverse of `PackedBatch.rows`: document pieces start where positions restart at 0."""
    flat = rows.transpose(0, 1).reshape(3, -1).to(torch.int64)
    ids, targets, pos = flat[0], flat[1], flat[2]
    starts = torch.nonzero(pos == 0).flatten()
    cu = torch.cat([starts, torch.tensor([len(ids)])]).to(torch.int32)
    lens = (cu[1:] - cu[:-1]).to(torch.int64)
    return PackedBatch(ids, targets, pos, cu, int(lens.max()), int(rows.shape[0]), int((lens**2).sum()))


def row_spans(sample: dict[str, Any], crop_tokens: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, spans (n, 2)) of one row, checked, and cropped to `crop_tokens` if set."""
    ids = np.asarray(sample["input_ids"])
    # MDS may hand `indices` back flattened; the contract is (n, 2) half-open spans.
    spans = np.asarray(sample["indices"], dtype=np.int64).reshape(-1, 2)
    spans = spans[spans[:, 1] != spans[:, 0]]  # an empty piece holds no tokens; varlen kernels need none
    ok = (len(spans) > 0 and spans[0, 0] == 0 and spans[-1, 1] == len(ids)
          and np.array_equal(spans[1:, 0], spans[:-1, 1]) and bool(np.all(spans[:, 1] > spans[:, 0])))
    if not ok:
        raise UserError(f"row from domain {sample.get('domain')!r}: `indices` spans do not tile the row "
                        "([start, end) sorted, contiguous, covering every token); run `mixcraft verify OUT`")
    if crop_tokens is not None and crop_tokens < len(ids):
        ids = ids[:crop_tokens]
        spans = spans[spans[:, 0] < crop_tokens].copy()
        spans[-1, 1] = crop_tokens
    return ids, spans


def row_targets(ids: np.ndarray, spans: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Next-token targets with -100 wherever the next token starts a document piece (it has no
    in-document predecessor), is masked out (SFT `mask == 0`), or lies past the row end."""
    labels = ids.astype(np.int64)
    labels[spans[:, 0]] = IGNORE
    if mask is not None:
        labels[np.asarray(mask)[: len(ids)] == 0] = IGNORE
    targets = np.full(len(ids), IGNORE, dtype=np.int64)
    targets[:-1] = labels[1:]
    return targets


def pack_rows(samples: list[dict[str, Any]], *, crop_tokens: int | None, vocab_size: int) -> PackedBatch:
    """The collate function: rows from the StreamingDataset -> one PackedBatch."""
    ids_all, targets_all, pos_all, lens_all = [], [], [], []
    for sample in samples:
        ids, spans = row_spans(sample, crop_tokens)
        if ids.size and int(ids.max()) >= vocab_size:
            raise UserError(f"row from domain {sample.get('domain')!r}: token id {int(ids.max())} >= model "
                            f"vocab_size {vocab_size}; the data and the model use different tokenizers")
        lens = spans[:, 1] - spans[:, 0]
        ids_all.append(ids.astype(np.int64))
        targets_all.append(row_targets(ids, spans, sample.get("mask")))
        pos_all.append(np.arange(len(ids)) - np.repeat(spans[:, 0], lens))
        lens_all.append(lens)
    lens = np.concatenate(lens_all)
    cu_seqlens = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
    return PackedBatch(
        input_ids=torch.from_numpy(np.concatenate(ids_all)), targets=torch.from_numpy(np.concatenate(targets_all)),
        position_ids=torch.from_numpy(np.concatenate(pos_all).astype(np.int64)),
        cu_seqlens=torch.from_numpy(cu_seqlens), max_seqlen=int(lens.max()), n_rows=len(samples),
        sum_sq_doc_lens=int((lens.astype(np.int64) ** 2).sum()))


def streaming_remote(url: str) -> str:
    """The `remote=` streaming understands: a plain path for local folders and file:// URLs
    (its downloaders know s3://, gs://, ... but not file://)."""
    return url.removeprefix("file://")


def make_loader(streams: list[StreamSpec], *, cache: Path, micro_batch_rows: int, seed: int, shuffle: bool,
                num_workers: int, crop_tokens: int | None, vocab_size: int, pin_memory: bool = False):
    """A resumable StreamingDataLoader over the weighted mixture, yielding PackedBatch.
    Shards are copied from each stream's `url` into `cache/<source>/<bucket>` and read there."""
    from streaming import Stream, StreamingDataLoader, StreamingDataset

    class PackedLoader(StreamingDataLoader):
        def _get_batch_size(self, batch: PackedBatch) -> int:  # counts rows for state_dict()
            return batch.n_rows

    dataset = StreamingDataset(
        streams=[Stream(remote=streaming_remote(s.url), local=str(Path(cache) / s.name), proportion=s.proportion)
                 for s in streams],
        shuffle=shuffle, shuffle_seed=seed, batch_size=micro_batch_rows)
    collate = functools.partial(pack_rows, crop_tokens=crop_tokens, vocab_size=vocab_size)
    return PackedLoader(dataset, batch_size=micro_batch_rows, collate_fn=collate, num_workers=num_workers,
                        pin_memory=pin_memory, persistent_workers=num_workers > 0)


def batches_forever(loader) -> Iterator[PackedBatch]:
    """Loop over epochs; the dataset reshuffles each epoch and resumes mid-epoch from its state."""
    empty_epochs = 0
    while True:
        n_batches = 0
        for batch in loader:
            n_batches += 1
            yield batch
        # A resumed epoch that had already finished yields nothing once; twice in a row means no data.
        empty_epochs = empty_epochs + 1 if n_batches == 0 else 0
        if empty_epochs >= 2:
            raise UserError("the training data yielded no rows; check data.path and `mixcraft stats OUT`")


def close_loader(loader) -> None:
    """Stop workers and release the dataset's claim on its local dirs now, not at garbage
    collection: streaming refuses a second dataset over the same dirs while the claim is held,
    and an exception's traceback can keep the first one alive (a failed run, then a retry)."""
    if loader is None:
        return
    shutdown_workers = getattr(getattr(loader, "_iterator", None), "_shutdown_workers", None)
    if shutdown_workers is not None:
        shutdown_workers()
    loader._iterator = None
    release_dataset(loader.dataset)


def release_dataset(dataset) -> None:
    """Give up a StreamingDataset's claim on its local dirs (what its `__del__` does; safe to repeat)."""
    dataset.__del__()
