"""Code repositories, one document per repository (ProLong's "concatenated per repo").

Input: folders named in `paths`, each holding repositories as subfolders (a git clone gives
its tracked files, so `.gitignore` is respected) or archives (`.tar.gz`, `.tgz`, `.tar`,
`.tar.bz2`, `.tar.xz`, `.zip`; PyPI sdists are such archives).

File order, headers, separators and the file skip rules are shared with the file-level
dataset reader and documented in `code_common`: the root README first, then every other file
by path.

Skipped files are counted as notes with a reason: those of `code_common.FileRules`, plus
symlink, symlink_escapes_root, unsafe_path (an archive member with `..` or an absolute path;
archives are read in memory and never extracted, so nothing outside the root is touched),
not_a_file, unreadable.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import ClassVar

from datatrove.data import Document

from mixcraft.core.ledger import Ledger
from mixcraft.core.recipe import ReaderConfig
from mixcraft.readers.base import Reader, Unit, path_problems
from mixcraft.readers.code_common import FileRuleParams, FileRules, join_repo
from mixcraft.schema import Invalid, RelPath

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz", ".zip")
_S_IFLNK = 0o120000  # a zip member whose Unix mode says "symlink" holds the link target as its data


@dataclass(frozen=True, kw_only=True)
class CodeReposConfig(FileRuleParams, ReaderConfig):
    type_name: ClassVar[str] = "code_repos"
    paths: tuple[RelPath, ...]  # folders holding repositories (subfolders, git clones, archives)

    def __post_init__(self) -> None:
        if not self.paths:
            raise Invalid("name at least one folder of repositories", "paths")
        self.check_header()

    def input_problems(self) -> list[tuple[str, str]]:
        problems = path_problems(self.paths, (), self.type_name)
        for i, p in enumerate(self.paths):
            if Path(p).is_file():
                problems.append((f"paths[{i}]", f"{Path(p).name} is a file; code_repos takes folders holding "
                                 "repositories (subfolders, git clones or archives), so name the folder that holds it"))
        return problems

    def describe(self) -> str:
        return ", ".join(Path(p).name for p in self.paths)


def _strip_common_root(names: list[str]) -> list[str]:
    """sdists put everything under `name-version/`; drop that shared first folder."""
    heads = {n.split("/", 1)[0] for n in names}
    if len(heads) == 1 and all("/" in n for n in names):
        return [n.split("/", 1)[1] for n in names]
    return names


def _unsafe(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return p.is_absolute() or ".." in p.parts or (len(name) > 1 and name[1] == ":")


def _symlink_reason(link: Path, root: Path) -> str:
    """Symlinks are never followed; the reason says whether following would have left the root."""
    try:
        target = link.resolve()
    except (RuntimeError, OSError):  # Python 3.11 raises RuntimeError on a loop
        return "symlink_loop"
    return "symlink" if target == root or root in target.parents else "symlink_escapes_root"


def repo_name(unit_key: str) -> str:
    for suffix in ARCHIVE_SUFFIXES:
        unit_key = unit_key.removesuffix(suffix)
    return unit_key


class CodeReposReader(Reader):
    cfg: CodeReposConfig

    def __init__(self, source: str, cfg: CodeReposConfig, ledger: Ledger, work_dir: Path | None = None):
        super().__init__(source, cfg, ledger, work_dir)
        self.rules = FileRules(cfg, ledger)

    def list_units(self) -> list[Unit]:
        units = []
        for root in self.cfg.paths:
            for entry in sorted(Path(root).iterdir()):
                if entry.is_symlink():
                    self.listing_note("symlink", str(entry))
                elif entry.is_dir() or entry.name.endswith(ARCHIVE_SUFFIXES):
                    size = entry.stat().st_size if entry.is_file() else 0
                    units.append(Unit(key=entry.name, path=str(entry), size_bytes=size))
                else:
                    self.listing_note("unsupported_format", str(entry))
        return units

    def read_unit(self, unit: Unit) -> Iterator[Document]:
        path = Path(unit.path)
        try:
            files = list(self._archive_files(path) if path.is_file() else self._dir_files(path))
        except PermissionError:
            self.ledger.skip("unreadable", str(path))
            return
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
            self.ledger.skip("corrupt_archive", f"{path}: {exc}")
            return
        if not files:
            self.ledger.skip("empty_repo", str(path))
            return
        name = repo_name(unit.key)
        text, meta = join_repo(files, self.cfg)
        self.ledger.read()
        yield self.doc(text, f"{self.source}/{name}", repo=name, **meta)

    # -- which files a repository holds ------------------------------------------------------

    def _dir_files(self, root: Path) -> Iterator[tuple[str, str]]:
        root = root.resolve()
        rules = self.rules
        for rel in self._list_dir(root):
            where = f"{root}/{rel}"
            full = root / rel
            if full.is_symlink():
                self.ledger.note(_symlink_reason(full, root), where)
                continue
            if not full.is_file() or not rules.keep_path(rel, where):
                continue
            try:
                if rules.too_large(full.stat().st_size, where):
                    continue
                data = full.read_bytes()
            except OSError:
                self.ledger.note("unreadable", where)
                continue
            text = rules.content(data, where)
            if text is not None:
                yield rel, text

    def _list_dir(self, root: Path) -> list[str]:
        """Tracked files of a git clone (so .gitignore holds), else every file under root."""
        if (root / ".git").exists():
            try:
                out = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], capture_output=True,
                                     check=True, timeout=600).stdout
                return sorted(p for p in out.decode("utf-8", "replace").split("\0") if p)
            except (OSError, subprocess.SubprocessError):
                self.ledger.note("git_ls_files_failed", str(root))
        rels = []
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            # A symlinked folder is listed like a file so that _dir_files counts it; never
            # descending into one is what keeps a symlink loop from recursing forever.
            links = [d for d in dirnames if (Path(dirpath) / d).is_symlink()]
            dirnames[:] = sorted(d for d in dirnames if d not in links)
            for name in [*filenames, *links]:
                rels.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
        return sorted(rels)

    def _archive_files(self, path: Path) -> Iterator[tuple[str, str]]:
        if path.name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                members = [(i.filename, i) for i in zf.infolist() if not i.is_dir()]
                yield from self._members(path, members, lambda i: i.file_size, zf.read,
                                         lambda i: (i.external_attr >> 16) & 0o170000 == _S_IFLNK)
        else:
            with tarfile.open(path, "r:*") as tf:
                members = [(m.name, m) for m in tf.getmembers() if not m.isdir()]

                def read(m: tarfile.TarInfo) -> bytes:
                    f = tf.extractfile(m)
                    return f.read() if f else b""

                yield from self._members(path, members, lambda m: m.size, read, lambda m: not m.isfile())

    def _members(self, path, members, size_of, read, not_regular) -> Iterator[tuple[str, str]]:
        safe = []
        for name, m in members:
            where = f"{path}:{name}"
            if _unsafe(name):
                self.ledger.note("unsafe_path", where)
            elif not_regular(m):
                is_link = isinstance(m, zipfile.ZipInfo) or m.issym() or m.islnk()
                self.ledger.note("symlink" if is_link else "not_a_file", where)
            else:
                safe.append((name, m))
        rels = _strip_common_root([n for n, _ in safe])
        for rel, (name, m) in zip(rels, safe, strict=True):
            where = f"{path}:{name}"
            if not self.rules.keep_path(rel, where) or self.rules.too_large(size_of(m), where):
                continue
            text = self.rules.content(read(m), where)
            if text is not None:
                yield rel, text
