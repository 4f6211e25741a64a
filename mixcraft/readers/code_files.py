"""File-level code datasets (The Stack v1 style), one document per repository.

Each input row is one file: `repo_field` (default `max_stars_repo_name`), `path_field`
(`max_stars_repo_path`) and `content_field` (`content`), from JSONL/Parquet `paths` (local or
fsspec URLs) or a hub `dataset` (its data files; see `datafiles`). One repository's rows may be
spread over many input files, so rows are grouped by a shuffle (disk layout in `shuffle`):

1. **Map** (before the source's tasks; `PartitionRepos`, one datatrove task per map rank):
   map task `rank` of `world_size` reads data files `rank, rank+world_size, ...` (only the
   repo/path/content/lang columns of Parquet, with `where` pushed into the scan) and appends
   each row to partition `crc32(repo) % partitions`. A repository lands in exactly one
   partition. `prepare` plans the pass and returns it as a `PrepareStage` (`map_tasks` ranks of
   this step, then `finish_map`), which the build runs in one process or fans out on its
   executor; a killed pass resumes with the ranks that did not finish.
2. **Reduce** (in the tasks; task i takes partitions i, i+n, ...): read one partition sorted by
   (repo, path, content), spilling sorted runs to disk, and join each repository's files as
   `code_repos` does (README first, then by path; same headers, separators, skip rules and
   `max_repo_bytes` cap; see `code_common`).

Memory per map task is one 64 MiB buffer and per reduce task about 64 MiB of rows plus one
repository (at most `max_repo_bytes`), whatever the input size. Defaults: one partition per
~64 MiB of input (at least one per task), one map task per data file up to the source's `tasks`.

Row-level problems are counted in the map ledgers, which task 0 adds to its own: missing or
non-string repo/path/content (notes `missing_repo`, `missing_path`, `missing_content`),
malformed JSONL lines, unreadable or corrupt files. A path seen twice in one repository keeps
its first copy (`duplicate_path`).
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

import pyarrow as pa
import zstandard
from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep

from mixcraft.core.ledger import Ledger, merge_ledgers
from mixcraft.core.outdir import write_atomic
from mixcraft.core.records import JSONL_SUFFIXES, MAX_LINE_BYTES, PARQUET_SUFFIXES, get_field, iter_records
from mixcraft.errors import UserError
from mixcraft.readers.base import FilesOrHub, PrepareStage, Reader, Unit, first_line
from mixcraft.readers.code_common import FileRuleParams, FileRules, RepoFiles, join_repo
from mixcraft.readers.datafiles import hf_records, resolve
from mixcraft.readers.inputs import list_files
from mixcraft.readers.shuffle import PartitionWriter, clear_map_output, map_marker, part_dir, sorted_rows
from mixcraft.schema import Positive

PARTITION_BYTES = 64 << 20  # input bytes per partition by default: a reduce task's share of disk
PLAN_KEYS = ("repo_field", "path_field", "content_field", "lang_field", "where", "split", "config",
             "data_files", "revision", "max_line_bytes")


@dataclass(frozen=True, kw_only=True)
class CodeFilesConfig(FileRuleParams, FilesOrHub):
    type_name: ClassVar[str] = "code_files"
    suffixes: ClassVar[tuple[str, ...]] = JSONL_SUFFIXES + PARQUET_SUFFIXES
    repo_field: str = "max_stars_repo_name"
    path_field: str = "max_stars_repo_path"
    content_field: str = "content"
    lang_field: str | None = None
    partitions: Annotated[int, Positive] | None = None  # default: one per ~64 MiB of input, >= tasks
    map_tasks: Annotated[int, Positive] | None = None  # default: one per data file, at most `tasks`
    max_line_bytes: Annotated[int, Positive] = MAX_LINE_BYTES

    def __post_init__(self) -> None:
        FilesOrHub.__post_init__(self)
        self.check_header()

    def partition_tasks(self, n_tasks: int) -> int:
        """The map stage's fan-out as planned without listing the data (`--dry-run`): `map_tasks`,
        else the source's `tasks`; fewer at build time when there are fewer data files."""
        return self.map_tasks or n_tasks


# -- the plan: which files, how many partitions and map tasks ---------------------------------

def make_plan(cfg: CodeFilesConfig, n_tasks: int, ledger: Ledger) -> dict[str, Any]:
    """The map pass's inputs and shape; listing skips (links, other formats) go to `ledger`."""
    if cfg.dataset is not None:
        found = resolve(cfg)
        files = None if found.units is None else [[u.path, u.size_bytes] for u in found.units]
    else:
        units = list_files(cfg.paths, cfg.suffixes, lambda reason, where: ledger.note(reason, where))
        if not units:
            raise UserError(f"code_files: no JSONL or Parquet files under {list(cfg.paths)} "
                            "(code_files reads .jsonl[.gz|.zst] and .parquet)")
        files = [[u.path, u.size_bytes] for u in units]
    total = sum(size for _, size in files or [])
    n_parts = cfg.partitions or max(n_tasks, math.ceil(total / PARTITION_BYTES))
    n_maps = 1 if files is None else min(len(files), cfg.map_tasks or n_tasks)
    identity = {"files": files, "partitions": n_parts, "map_tasks": n_maps,
                "cfg": {k: getattr(cfg, k) for k in PLAN_KEYS}}
    if files is None:  # a dataset without data files: one map task streams it (counted)
        identity["dataset"] = cfg.dataset
    return identity


def load_plan(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "plan.json").read_text())


# -- map ---------------------------------------------------------------------------------------

def map_rows(cfg: CodeFilesConfig, path: str, ledger: Ledger) -> Iterator[tuple[str, dict]]:
    """(where, record) of one data file, reading only the columns a row needs."""
    fields = [cfg.repo_field, cfg.path_field, cfg.content_field] + ([cfg.lang_field] if cfg.lang_field else [])
    try:
        for n, record in iter_records(path, ledger, columns=[f.split(".")[0] for f in fields],
                                      where=cfg.where, max_line_bytes=cfg.max_line_bytes):
            yield f"{path}:{n}", record
    except PermissionError:
        ledger.note("unreadable", path)
    except (OSError, EOFError, zstandard.ZstdError) as exc:
        ledger.note("corrupt_file", f"{path}: {first_line(exc)}")


def to_row(cfg: CodeFilesConfig, record: dict, where: str, ledger: Ledger) -> dict[str, str | None] | None:
    """The shuffle's row (repo, path, content, lang), or None (counted) when a field is missing."""
    row = {}
    for key, field in (("repo", cfg.repo_field), ("path", cfg.path_field), ("content", cfg.content_field)):
        value = get_field(record, field)
        if not isinstance(value, str) or (key != "content" and not value):
            ledger.note(f"missing_{key}", f"{where}: no string field {field!r}")
            return None
        row[key] = value
    try:
        for key in ("repo", "path", "content"):
            row[key].encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escaped in JSON ("\ud800") is not text
        ledger.note("invalid_utf8", where)
        return None
    lang = get_field(record, cfg.lang_field) if cfg.lang_field else None
    row["lang"] = lang if isinstance(lang, str) else None
    return row


def run_map(source: str, cfg: CodeFilesConfig, folder: Path, rank: int, world_size: int, *,
            strict: bool = False) -> None:
    """Map task `rank` of `world_size`: partition the rows of its data files (a no-op when it
    already finished). Its ledger is saved as its completion marker."""
    plan = load_plan(folder)
    if world_size != plan["map_tasks"]:
        raise UserError(f"source {source}: the code_files map pass has {plan['map_tasks']} tasks, "
                        f"not {world_size}; run it with that many")
    if map_marker(folder, rank).is_file():
        return
    clear_map_output(folder, rank)
    ledger = Ledger(source, strict=strict)
    writer = PartitionWriter(folder, plan["partitions"], rank)
    if plan["files"] is None:
        records = hf_records(cfg, 0, 1, ledger)
    else:
        records = (r for path, _ in plan["files"][rank::world_size] for r in map_rows(cfg, path, ledger))
    for where, record in records:
        row = to_row(cfg, record, where, ledger)
        if row is not None:
            writer.add(row)
    writer.flush()
    ledger.save(map_marker(folder, rank))


class PartitionRepos(PipelineStep):
    """The map stage as a datatrove step: `(rank, world_size)` partitions that rank's data
    files. Run `map_tasks` ranks (in `plan.json`) on any executor, then `finish_map`."""

    name = "code_files partition"
    type = "mixcraft"

    def __init__(self, source: str, cfg: CodeFilesConfig, folder: Path, *, strict: bool = False):
        super().__init__()
        self.source, self.cfg, self.folder, self.strict = source, cfg, folder, strict

    def run(self, data=None, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        run_map(self.source, self.cfg, self.folder, rank, world_size, strict=self.strict)
        yield from ()


def start_map(source: str, cfg: CodeFilesConfig, folder: Path, n_tasks: int, *, strict: bool = False) -> int:
    """Plan the map pass into `folder` (kept when the plan is unchanged, so finished ranks are
    not redone) and return its number of map tasks; 0 when the pass is already done."""
    listing = Ledger(source, strict=strict)
    plan = make_plan(cfg, n_tasks, listing)
    if (folder / "plan.json").is_file() and load_plan(folder) == plan:
        return 0 if (folder / "done.json").is_file() else plan["map_tasks"]
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    listing.save(folder / "maps" / "listing.json")
    write_atomic(folder / "plan.json", json.dumps(plan))
    return plan["map_tasks"]


def finish_map(folder: Path) -> None:
    """After every map rank ran: merge their ledgers for task 0 and mark the pass done."""
    plan = load_plan(folder)
    missing = [r for r in range(plan["map_tasks"]) if not map_marker(folder, r).is_file()]
    if missing:
        raise UserError(f"{folder}: code_files map tasks {missing[:5]} did not finish; re-run the build")
    parts = [json.loads(p.read_text()) for p in sorted((folder / "maps").glob("*.json"))]
    write_atomic(folder / "ledger.json", json.dumps(merge_ledgers(parts)))
    write_atomic(folder / "done.json", json.dumps({"map_tasks": plan["map_tasks"]}))


# -- the reader: reduce ------------------------------------------------------------------------

class CodeFilesReader(Reader):
    cfg: CodeFilesConfig
    strict = False

    def prepare(self, folder: Path, n_tasks: int) -> PrepareStage | None:
        """Plan the map stage; the stage to run, or None when a finished pass matches the plan."""
        strict = self.ledger.strict
        n_maps = start_map(self.source, self.cfg, folder, n_tasks, strict=strict)
        if not n_maps:
            return None
        step = PartitionRepos(self.source, self.cfg, folder, strict=strict)
        return PrepareStage(f"{self.source}/code_files_map", step, n_maps, lambda: finish_map(folder))

    def list_units(self) -> list[Unit]:
        if self.work_dir is None or not (self.work_dir / "done.json").is_file():
            raise UserError(f"source {self.source}: the code_files partition pass has not run "
                            "(it runs at the start of `mixcraft build`)")
        units = []
        for i in range(load_plan(self.work_dir)["partitions"]):
            part = part_dir(self.work_dir, i)
            size = sum(f.stat().st_size for f in part.glob("*.parquet")) if part.is_dir() else 0
            units.append(Unit(key=part.name, path=str(part), size_bytes=size))
        return units

    def read(self, task: int, n_tasks: int) -> Iterator[Document]:
        if task == 0 and self.work_dir is not None and (self.work_dir / "ledger.json").is_file():
            self.ledger.absorb(json.loads((self.work_dir / "ledger.json").read_text()))
        yield from super().read(task, n_tasks)

    def read_unit(self, unit: Unit) -> Iterator[Document]:
        part = Path(unit.path)
        if not part.is_dir():
            return
        spill = part.parent / "spill" / part.name
        rows = sorted_rows(part, spill)
        try:
            for repo, repo_rows in itertools.groupby(rows, key=lambda r: r["repo"]):
                yield from self._repo_doc(repo, repo_rows)
        except (OSError, pa.ArrowException) as exc:  # our own intermediate files, damaged on disk
            raise UserError(f"{part}: a partition file of the code_files pass is damaged ({first_line(exc)}); "
                            f"delete {part.parent} and re-run the build") from None

    def _repo_doc(self, repo: str, rows: Iterator[dict]) -> Iterator[Document]:
        rules = FileRules(self.cfg, self.ledger)
        files = RepoFiles(self.cfg, rules)
        seen: set[str] = set()
        for row in rows:
            rel, where = row["path"].lstrip("/"), f"{repo}:{row['path']}"
            if rel in seen:
                rules.note("duplicate_path", where)
                continue
            seen.add(rel)
            if not rules.keep_path(rel, where) or files.past_cut(rel, where):
                continue
            if rules.too_large(len(row["content"].encode("utf-8")), where):
                continue
            text = rules.content(row["content"], where)
            if text is not None:
                files.add(rel, text, where, row["lang"])
        if not files.files:
            self.ledger.skip("empty_repo", repo)
            return
        text, meta = join_repo(files.pairs(), self.cfg, files.languages())
        self.ledger.read()
        yield self.doc(text, f"{self.source}/{repo}", repo=repo, **meta)
