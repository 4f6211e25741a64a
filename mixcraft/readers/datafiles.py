"""Hub datasets read by data file: each task opens only its own files.

`dataset:` (a hub id such as `cerebras/SlimPajama-627B`, a local folder laid out like a hub
repository, or a builder name such as `parquet` with `data_files`) is resolved to its data files
by `datasets`' own resolution (`load_dataset_builder`: the repository's README configs, or its
default layout), for the recipe's `config`, `data_files`, `revision` and `split`. The list is
resolved once, in the build's prepare pass, and saved beside the source's other prepare results
(`datafiles.json`), so every task, on any node, sees the same files in the same order; task `i`
of `n` reads files `i, i+n, ...` (datatrove's `get_shard` convention).

A dataset with fewer data files than the source has tasks (allenai/tulu-v2-sft-mixture: 3
Parquet files) would leave tasks idle and make each file one long task. Its Parquet files are
then cut into contiguous row-group ranges, up to `tasks` pieces in all (the prepare pass reads
only their footers); a task opens the file and reads its own row groups' column chunks. Row
numbers, and so document ids, are the file's, whichever piece holds the row. Hub files are `hf://`
URLs opened through fsspec (`huggingface_hub.HfFileSystem`), which reads only the byte ranges a
Parquet scan asks for.

JSONL (plain, .gz, .zst) and Parquet files are read by `core/records.py` (with `where` pushed
into the Parquet scan); other formats (csv, arrow, ...) are streamed one file at a time by the
`datasets` builder that resolved them. A dataset without data files (no such dataset exists since
`datasets` 4 dropped loading scripts, but a custom builder may) falls back to streaming the whole
dataset in every task, split by `datasets.distributed.split_dataset_by_node`; each task counts the
note `streamed_without_data_files`, so the cost shows in the ledger.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mixcraft.core.ledger import Ledger
from mixcraft.core.outdir import write_atomic
from mixcraft.core.records import (
    JSONL_SUFFIXES,
    PARQUET_SUFFIXES,
    get_field,
    is_url,
    parquet_row_groups,
    selected,
)
from mixcraft.errors import UserError
from mixcraft.readers.base import HubParams, first_line
from mixcraft.readers.inputs import Unit

DATAFILES_JSON = "datafiles.json"
FAST_SUFFIXES = JSONL_SUFFIXES + PARQUET_SUFFIXES


class DatasetFiles:
    """A dataset's data files for one split (`units`, or None when it has none; a Parquet file
    may be cut into row-group ranges), the name of the `datasets` builder that reads them
    (`parquet`, `json`, `csv`, ...), and the task count the pieces were cut for."""

    def __init__(self, units: list[Unit] | None, builder: str, tasks: int = 1):
        self.units, self.builder, self.tasks = units, builder, tasks

    def to_json(self, identity: dict[str, Any]) -> str:
        files = None if self.units is None else [
            {"path": u.path, "size": u.size_bytes, "key": u.key, "row_groups": u.row_groups} for u in self.units]
        return json.dumps({"identity": identity, "builder": self.builder, "tasks": self.tasks, "files": files})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DatasetFiles:
        files = data["files"]
        units = None if files is None else [_saved_unit(f) for f in files]
        return cls(units, data["builder"], data.get("tasks", 1))


def _saved_unit(f: dict | list) -> Unit:
    if isinstance(f, list):  # [path, size] as saved before units had their own keys
        return Unit(key=f[0], path=f[0], size_bytes=f[1])
    rg = tuple(f["row_groups"]) if f["row_groups"] else None
    return Unit(key=f["key"], path=f["path"], size_bytes=f["size"], row_groups=rg)


def _piece(unit: Unit, size: int, row_groups: tuple[int, int]) -> Unit:
    key = f"{unit.key}#row_groups={row_groups[0]}-{row_groups[1]}"
    return Unit(key=key, path=unit.path, size_bytes=size, row_groups=row_groups)


def split_row_groups(units: list[Unit], n_tasks: int) -> list[Unit]:
    """Parquet files cut into contiguous row-group ranges of about equal rows when there are
    fewer files than tasks, so that up to `n_tasks` tasks get input; others as they are."""
    if not units or len(units) >= n_tasks:
        return units
    per_file = -(-n_tasks // len(units))
    out = []
    for unit in units:
        rows = parquet_row_groups(unit.path) if unit.path.endswith(PARQUET_SUFFIXES) else []
        pieces = min(per_file, len(rows))
        if pieces <= 1:
            out.append(unit)
            continue
        total, bounds, seen = sum(rows) or 1, [0], 0
        for g, n in enumerate(rows[:-1]):  # cut after the group that passes the next equal share
            seen += n
            if seen * pieces >= total * len(bounds) and len(bounds) < pieces:
                bounds.append(g + 1)
        bounds.append(len(rows))
        for a, b in zip(bounds, bounds[1:], strict=False):
            out.append(_piece(unit, unit.size_bytes * sum(rows[a:b]) // total, (a, b)))
    return out


def identity(cfg: HubParams) -> dict[str, Any]:
    return {k: getattr(cfg, k) for k in ("dataset", "config", "split", "data_files", "revision")}


def _saved(cfg: HubParams, work_dir: Path | None) -> DatasetFiles | None:
    saved = work_dir / DATAFILES_JSON if work_dir is not None else None
    if saved is not None and saved.is_file():
        data = json.loads(saved.read_text())
        if data["identity"] == identity(cfg):
            return DatasetFiles.from_json(data)
    return None


def dataset_files(cfg: HubParams, work_dir: Path | None) -> DatasetFiles:
    """The files saved by the prepare pass when they match `cfg`, else resolved now."""
    return _saved(cfg, work_dir) or resolve(cfg)


def save_dataset_files(cfg: HubParams, work_dir: Path, n_tasks: int = 1) -> DatasetFiles:
    """Resolve once before the tasks run (skipped when already saved for the same settings and
    task count)."""
    found = _saved(cfg, work_dir)
    if found is None or found.tasks != n_tasks:
        found = resolve(cfg, n_tasks)
    write_atomic(work_dir / DATAFILES_JSON, found.to_json(identity(cfg)))
    return found


def resolve(cfg: HubParams, n_tasks: int = 1) -> DatasetFiles:
    import datasets
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    name = cfg.dataset
    if name in _PACKAGED_DATASETS_MODULES and not cfg.data_files and not Path(name).is_dir():
        # `datasets` would look for such files under the working directory, whatever it holds
        raise UserError(f"dataset {name!r} is a file format, not a dataset: give its `data_files` (paths or "
                        "globs), or use the `text` reader's `paths`")
    try:
        builder = datasets.load_dataset_builder(name, cfg.config, data_files=cfg.data_files, revision=cfg.revision)
    except Exception as exc:  # datasets raises many types (ConnectionError, FileNotFoundError, ...)
        raise UserError(f"dataset {name!r}: cannot be loaded ({first_line(exc)}); check the id and your network, "
                        "or download it and point `data_files` at the local files") from None
    data_files = builder.config.data_files
    if not data_files:
        return DatasetFiles(None, builder.name, n_tasks)
    if cfg.split not in data_files:
        raise UserError(f"dataset {name!r}: no split {cfg.split!r} (it has {', '.join(sorted(data_files))}); "
                        "set `split`")
    paths = sorted(str(f) for f in data_files[cfg.split])
    # A unit's key (what a seeded order hashes) is its path in the dataset: below the dataset's
    # folder when it is a local one, so a copy of it elsewhere gives the same sample.
    local = Path(name) if Path(name).is_dir() else None
    units = [Unit(key=os.path.relpath(p, local) if local and not is_url(p) else p, path=p, size_bytes=_size(p))
             for p in paths]
    units = split_row_groups(units, n_tasks)
    return DatasetFiles(units, builder.name, n_tasks)


def _size(path: str) -> int:
    """The file's size for progress bars (0 when the store does not say)."""
    try:
        if not is_url(path):
            return Path(path).stat().st_size
        from fsspec.core import url_to_fs

        fs, root = url_to_fs(path)
        return int(fs.info(root).get("size") or 0)
    except Exception:  # a size is a nicety; the read itself reports real problems
        return 0


def stream_file(builder: str, path: str, where: dict[str, Any]) -> Iterator[tuple[int, dict]]:
    """(row number, record) of one data file in a format `core/records.py` does not read,
    streamed by the `datasets` builder that resolved it."""
    import datasets

    ds = datasets.load_dataset(builder, data_files={"train": [path]}, split="train", streaming=True)
    for n, record in enumerate(ds, start=1):
        if not where or selected(record, where):
            yield n, record


def hf_records(cfg: HubParams, task: int, n_tasks: int, ledger: Ledger) -> Iterator[tuple[str, dict]]:
    """(where, record) for this task's share of a dataset without data files (the fallback:
    every task streams the dataset and `datasets` keeps its share)."""
    import datasets
    from datasets.distributed import split_dataset_by_node

    name = cfg.dataset
    try:
        ds = datasets.load_dataset(name, cfg.config, split=cfg.split, data_files=cfg.data_files,
                                   revision=cfg.revision, streaming=cfg.streaming)
    except Exception as exc:  # datasets raises many types (ConnectionError, FileNotFoundError, ...)
        raise UserError(f"dataset {name!r}: cannot be loaded ({first_line(exc)}); check the id and your network, "
                        "or download it and point `data_files` at the local files") from None
    ledger.note("streamed_without_data_files")
    ds = split_dataset_by_node(ds, rank=task, world_size=n_tasks)
    for i, record in enumerate(ds):
        if cfg.where and not all(get_field(record, k) == v for k, v in cfg.where.items()):
            ledger.note("not_selected")
            continue
        yield f"{name}[{task}/{n_tasks}]#{i}", record
