"""File-level code datasets (The Stack v1 style), one document per repository.

Each input row is one file: `repo_field` (default `max_stars_repo_name`), `path_field`
(`max_stars_repo_path`) and `content_field` (`content`), from local JSONL/Parquet `paths` or
an HF `dataset`. One repository's rows may be spread over many input files, so rows are
grouped in two passes with bounded memory:

1. **Partition** (once per build, before the source's tasks, in `prepare`): stream every
   row, and append it to partition `hash(repo) % partitions` as Parquet chunks under
   OUT/.mixcraft/prepare/<source>/. Buffers are flushed every `FLUSH_BYTES`, so memory holds
   one buffer, not the dataset. A repository lands in exactly one partition.
2. **Group** (in the tasks; task i takes partitions i, i+n, ...): read one partition, sort
   it by (repo, path) and join each repository's files as `code_repos` does (same order:
   README first, then by path; same headers, separators and skip rules; see `code_common`).

Memory per task is about one partition: input bytes / `partitions` (default: one partition
per ~64 MiB of input, at least one per task). The partition pass is resumable: a finished
pass leaves `done.json` naming its inputs and settings, and is reused when they match.

Row-level problems are counted in a prepare ledger that task 0 adds to its own: missing or
non-string repo/path/content (notes `missing_repo`, `missing_path`, `missing_content`),
malformed JSONL lines. A path seen twice in one repository keeps its first copy
(`duplicate_path`).
"""

from __future__ import annotations

import json
import math
import shutil
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import Document

from mixcraft.core.ledger import Ledger
from mixcraft.errors import UserError
from mixcraft.readers.base import FilesOrHub, Reader, Unit, expand_paths
from mixcraft.readers.code_common import FileRuleParams, FileRules, join_repo, language_of
from mixcraft.readers.hf import hf_records
from mixcraft.readers.text import (
    JSONL_SUFFIXES,
    MAX_LINE_BYTES,
    PARQUET_SUFFIXES,
    get_field,
    iter_jsonl,
    iter_parquet,
)
from mixcraft.schema import Positive

FLUSH_BYTES = 64 << 20  # rows buffered before a flush to disk: the pass's memory bound
PARTITION_BYTES = 64 << 20  # input bytes per partition by default: a task's memory bound
SCHEMA = pa.schema([("repo", pa.string()), ("path", pa.string()), ("content", pa.string()),
                    ("lang", pa.string())])


@dataclass(frozen=True, kw_only=True)
class CodeFilesConfig(FileRuleParams, FilesOrHub):
    type_name: ClassVar[str] = "code_files"
    suffixes: ClassVar[tuple[str, ...]] = JSONL_SUFFIXES + PARQUET_SUFFIXES
    repo_field: str = "max_stars_repo_name"
    path_field: str = "max_stars_repo_path"
    content_field: str = "content"
    lang_field: str | None = None
    partitions: Annotated[int, Positive] | None = None  # default: one per ~64 MiB of input, >= tasks
    max_line_bytes: Annotated[int, Positive] = MAX_LINE_BYTES

    def __post_init__(self) -> None:
        FilesOrHub.__post_init__(self)
        self.check_header()


def partition_of(repo: str, n_parts: int) -> int:
    """A stable hash (CRC-32, the same on every machine and Python run) picks the partition."""
    return zlib.crc32(repo.encode("utf-8", "surrogatepass")) % n_parts


class _PartitionWriter:
    """Buffers rows per partition and flushes them as numbered Parquet chunks."""

    def __init__(self, folder: Path, n_parts: int):
        self.folder, self.n_parts = folder, n_parts
        self.buffers: dict[int, list[dict]] = {}
        self.buffered = 0
        self.chunk = 0

    def add(self, row: dict[str, str | None]) -> None:
        part = partition_of(row["repo"], self.n_parts)
        self.buffers.setdefault(part, []).append(row)
        self.buffered += len(row["content"]) + len(row["path"]) + len(row["repo"])
        if self.buffered >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        for part, rows in sorted(self.buffers.items()):
            out = self.folder / f"part-{part:05d}"
            out.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), out / f"chunk-{self.chunk:06d}.parquet")
        self.chunk += 1
        self.buffers.clear()
        self.buffered = 0


class CodeFilesReader(Reader):
    cfg: CodeFilesConfig

    # -- pass 1: partition -------------------------------------------------------------------

    def _input_files(self) -> list[Path]:
        files = expand_paths(self.cfg.paths, JSONL_SUFFIXES + PARQUET_SUFFIXES, self.listing_note)
        if not files:
            raise UserError(f"source {self.source}: no JSONL or Parquet files under {list(self.cfg.paths)} "
                            "(code_files reads .jsonl[.gz|.zst] and .parquet)")
        return files

    def _identity(self, n_tasks: int) -> dict[str, Any]:
        if self.cfg.dataset is not None:
            inputs: list = [self.cfg.dataset]
            total = 0
        else:
            files = self._input_files()
            inputs = [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files]
            total = sum(size for _, size, _ in inputs)
        n_parts = self.cfg.partitions or max(n_tasks, math.ceil(total / PARTITION_BYTES))
        keys = ("repo_field", "path_field", "content_field", "lang_field", "where", "split", "config",
                "data_files", "revision")
        return {"inputs": inputs, "partitions": n_parts, "cfg": {k: getattr(self.cfg, k) for k in keys}}

    def prepare(self, folder: Path, n_tasks: int) -> None:
        """Hash-partition every row by repository into `folder` (skipped when already done).
        Row-level skips are counted in this reader's ledger, saved beside the partitions."""
        identity = self._identity(n_tasks)
        done = folder / "done.json"
        if done.is_file() and json.loads(done.read_text()).get("identity") == identity:
            return
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.mkdir(parents=True)
        writer = _PartitionWriter(tmp, identity["partitions"])
        for where, record in self._rows(self.ledger):
            row = self._row(record, where, self.ledger)
            if row is not None:
                writer.add(row)
        writer.flush()
        self.ledger.save(tmp / "ledger.json")  # task 0 adds these counts to its own ledger
        (tmp / "done.json").write_text(json.dumps({"identity": identity}))
        tmp.rename(folder)

    def _rows(self, ledger: Ledger) -> Iterator[tuple[str, dict]]:
        if self.cfg.dataset is not None:
            yield from hf_records(self.cfg, 0, 1, ledger)
            return
        where_filter = self.cfg.where
        for path in self._input_files():
            try:
                rows = (iter_parquet(path, ledger) if path.name.endswith(PARQUET_SUFFIXES)
                        else iter_jsonl(path, ledger, self.cfg.max_line_bytes))
                for n, record in rows:
                    if where_filter and not all(get_field(record, k) == v for k, v in where_filter.items()):
                        ledger.note("not_selected")
                        continue
                    yield f"{path}:{n}", record
            except PermissionError:
                ledger.note("unreadable", str(path))
            except (OSError, EOFError) as exc:
                ledger.note("corrupt_file", f"{path}: {exc}")

    def _row(self, record: dict, where: str, ledger: Ledger) -> dict[str, str | None] | None:
        row = {}
        for key, field in (("repo", self.cfg.repo_field), ("path", self.cfg.path_field),
                           ("content", self.cfg.content_field)):
            value = get_field(record, field)
            if not isinstance(value, str) or (key != "content" and not value):
                ledger.note(f"missing_{key}", f"{where}: no string field {field!r}")
                return None
            row[key] = value
        try:
            row["content"].encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate escaped in JSON ("\ud800") is not text
            ledger.note("invalid_utf8", where)
            return None
        lang = get_field(record, self.cfg.lang_field) if self.cfg.lang_field else None
        row["lang"] = lang if isinstance(lang, str) else None
        return row

    # -- pass 2: group -----------------------------------------------------------------------

    def list_units(self) -> list[Unit]:
        if self.work_dir is None or not (self.work_dir / "done.json").is_file():
            raise UserError(f"source {self.source}: the code_files partition pass has not run "
                            "(it runs at the start of `mixcraft build`)")
        n_parts = json.loads((self.work_dir / "done.json").read_text())["identity"]["partitions"]
        units = []
        for i in range(n_parts):
            part = self.work_dir / f"part-{i:05d}"
            size = sum(f.stat().st_size for f in part.glob("*.parquet")) if part.is_dir() else 0
            units.append(Unit(key=part.name, path=str(part), size_bytes=size))
        return units

    def read(self, task: int, n_tasks: int) -> Iterator[Document]:
        if task == 0 and self.work_dir is not None and (self.work_dir / "ledger.json").is_file():
            self.ledger.absorb(json.loads((self.work_dir / "ledger.json").read_text()))
        yield from super().read(task, n_tasks)

    def read_unit(self, unit: Unit) -> Iterator[Document]:
        chunks = sorted(Path(unit.path).glob("chunk-*.parquet"))
        if not chunks:
            return
        table = pa.concat_tables(pq.read_table(c, schema=SCHEMA) for c in chunks)
        table = table.sort_by([("repo", "ascending"), ("path", "ascending"), ("content", "ascending")])
        current: str | None = None
        rows: list[dict] = []
        for batch in table.to_batches(max_chunksize=4096):
            for row in batch.to_pylist():
                if row["repo"] != current and rows:
                    yield from self._repo_doc(current, rows)
                    rows = []
                current = row["repo"]
                rows.append(row)
        if rows:
            yield from self._repo_doc(current, rows)

    def _repo_doc(self, repo: str, rows: list[dict]) -> Iterator[Document]:
        rules = FileRules(self.cfg, self.ledger)
        files: list[tuple[str, str]] = []
        langs: Counter = Counter()
        seen: set[str] = set()
        for row in rows:
            rel, where = row["path"].lstrip("/"), f"{repo}:{row['path']}"
            if rel in seen:
                self.ledger.note("duplicate_path", where)
                continue
            seen.add(rel)
            if not rules.keep_path(rel, where) or rules.too_large(len(row["content"].encode("utf-8")), where):
                continue
            text = rules.content(row["content"], where)
            if text is not None:
                files.append((rel, text))
                langs[row["lang"] or language_of(rel)] += 1
        if not files:
            self.ledger.skip("empty_repo", repo)
            return
        text, meta = join_repo(files, self.cfg, langs)
        self.ledger.read()
        yield self.doc(text, f"{self.source}/{repo}", repo=repo, **meta)
