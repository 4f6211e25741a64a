"""Code repositories, one document per repository (ProLong's "concatenated per repo").

Input: folders named in `paths`, each holding repositories as subfolders (a git clone gives
its tracked files, read from its index without running git, so `.gitignore` holds and the
clone's own configuration never runs; see `gitindex`) or archives (`.tar.gz`, `.tgz`, `.tar`,
`.tar.bz2`, `.tar.xz`, `.zip`; PyPI sdists are such archives).

File order, headers, separators, the file skip rules and the per-repository cap are shared
with the file-level dataset reader and documented in `code_common`: the root README first,
then every other file by path.

Skipped files are counted as notes with a reason: those of `code_common.FileRules`, plus
symlink, symlink_escapes_root (a link, or a tracked path through a linked folder, that leads
outside the repository), unsafe_path (an archive member or index path with `..` or an absolute
path; archives are read in memory and never extracted, so nothing outside the root is
touched), not_a_file (a FIFO, device or socket: never opened), missing_file (tracked but not
checked out), submodule, invalid_utf8_name (a name of invalid UTF-8 bytes), unreadable, and the git index notes (git_dir_not_followed,
git_index_missing, git_index_too_large, git_index_unreadable: the clone is then read as a
plain folder). A whole repository is skipped as corrupt_archive, too_many_members (more than
100,000 archive members), unreadable or empty_repo.
"""

from __future__ import annotations

import lzma
import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import ClassVar

from datatrove.data import Document

from mixcraft.core.ledger import Ledger
from mixcraft.core.recipe import ReaderConfig
from mixcraft.readers.base import Reader, Unit, first_line, has_surrogates
from mixcraft.readers.code_common import FileRuleParams, FileRules, RepoFiles, join_repo, order_key
from mixcraft.readers.gitindex import UnreadableIndex, safe_relpath, tracked_files
from mixcraft.readers.inputs import is_remote, local_path, path_problems
from mixcraft.schema import Invalid, RelPath

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz", ".zip")
_S_IFLNK = 0o120000  # a zip member whose Unix mode says "symlink" holds the link target as its data
MAX_ARCHIVE_MEMBERS = 100_000  # CPython's source tree has about 5,000 files; a TarInfo is ~1 KB


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
            if is_remote(p):
                problems.append((f"paths[{i}]", f"{p}: code_repos reads local folders (git clones are read from "
                                 "their index on disk); copy the repositories locally, or give file-level rows "
                                 "to the code_files reader, which reads fsspec URLs"))
            elif Path(local_path(p)).is_file():
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
        target = link.resolve(strict=False)
    except (RuntimeError, OSError):  # Python 3.11 raises RuntimeError on a loop
        return "symlink_loop"
    return "symlink" if target == root or root in target.parents else "symlink_escapes_root"


def read_regular(path: Path, limit: int) -> bytes:
    """At most `limit + 1` bytes of a regular file, opened without following a final symlink and
    without blocking on a FIFO (a file swapped for either after listing is refused, not read)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise IsADirectoryError(f"{path}: not a regular file")
        return f.read(limit + 1)


def repo_name(unit_key: str) -> str:
    for suffix in ARCHIVE_SUFFIXES:
        unit_key = unit_key.removesuffix(suffix)
    return unit_key


class TooManyMembers(ValueError):
    pass


class CodeReposReader(Reader):
    cfg: CodeReposConfig

    def __init__(self, source: str, cfg: CodeReposConfig, ledger: Ledger, work_dir: Path | None = None):
        super().__init__(source, cfg, ledger, work_dir)
        self.rules = FileRules(cfg, ledger)

    def list_units(self) -> list[Unit]:
        units = []
        for root in self.cfg.paths:
            for entry in sorted(Path(local_path(root)).iterdir()):
                if entry.is_symlink():
                    self.listing_note("symlink", str(entry))
                elif has_surrogates(entry.name):  # it would become the document's id
                    self.listing_note("invalid_utf8_name", str(entry).encode("utf-8", "replace").decode())
                elif entry.is_dir() or (entry.is_file() and entry.name.endswith(ARCHIVE_SUFFIXES)):
                    size = entry.stat().st_size if entry.is_file() else 0
                    units.append(Unit(key=entry.name, path=str(entry), size_bytes=size))
                else:
                    self.listing_note("unsupported_format", str(entry))
        return units

    def read_unit(self, unit: Unit) -> Iterator[Document]:
        path = Path(unit.path)
        repo = RepoFiles(self.cfg, self.rules)
        try:
            if path.is_file():
                self._archive_files(path, repo)
            else:
                self._dir_files(path, repo)
        except PermissionError:
            self.ledger.skip("unreadable", str(path))
            return
        except TooManyMembers:
            self.ledger.skip("too_many_members", str(path))
            return
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
            self.ledger.skip("corrupt_archive", f"{path}: {first_line(exc)}")
            return
        if not repo.files:
            self.ledger.skip("empty_repo", str(path))
            return
        name = repo_name(unit.key)
        text, meta = join_repo(repo.pairs(), self.cfg)
        self.ledger.read()
        yield self.doc(text, f"{self.source}/{name}", repo=name, **meta)

    # -- which files a repository holds ------------------------------------------------------

    def _dir_files(self, root: Path, repo: RepoFiles) -> None:
        root = root.resolve()
        for rel in self._list_dir(root):
            where = f"{root}/{rel}"
            full = root / rel
            if has_surrogates(rel):  # invalid UTF-8 bytes in the name: it cannot go in a header
                self.rules.note("invalid_utf8_name", where.encode("utf-8", "replace").decode())
            elif full.is_symlink() or os.path.realpath(full) != str(full):  # the file, or a folder above it
                self.rules.note(_symlink_reason(full, root), where)
            elif not full.exists():
                self.rules.note("missing_file", where)
            elif not full.is_file():
                self.rules.note("not_a_file", where)
            elif self.rules.keep_path(rel, where) and not repo.past_cut(rel, where):
                self._add_file(full, rel, where, repo)

    def _add_file(self, full: Path, rel: str, where: str, repo: RepoFiles) -> None:
        try:
            if self.rules.too_large(full.stat().st_size, where):
                return
            data = read_regular(full, self.cfg.max_file_bytes)
        except OSError:
            self.rules.note("unreadable", where)
            return
        if self.rules.too_large(len(data), where):  # grew since it was listed
            return
        text = self.rules.content(data, where)
        if text is not None:
            repo.add(rel, text, where)

    def _list_dir(self, root: Path) -> list[str]:
        """Tracked files of a git clone (so .gitignore holds), else every file under root; in
        document order, so the repository cap can stop reading early."""
        if os.path.lexists(root / ".git"):
            try:
                files, submodules = tracked_files(root)
            except UnreadableIndex as exc:
                self.rules.note(str(exc), str(root))
            else:
                for rel in submodules:
                    self.rules.note("submodule", f"{root}/{rel}")
                safe = [rel for rel in files if safe_relpath(rel)]
                for rel in sorted(set(files) - set(safe)):
                    self.rules.note("unsafe_path", f"{root}/{rel}")
                return sorted(safe, key=order_key)
        rels = []
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            # A symlinked folder is listed like a file so that _dir_files counts it; never
            # descending into one is what keeps a symlink loop from recursing forever.
            links = [d for d in dirnames if (Path(dirpath) / d).is_symlink()]
            dirnames[:] = sorted(d for d in dirnames if d not in links)
            for name in [*filenames, *links]:
                rels.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
        return sorted(rels, key=order_key)

    def _archive_files(self, path: Path, repo: RepoFiles) -> None:
        if path.name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                infos = zf.infolist()
                if len(infos) > MAX_ARCHIVE_MEMBERS:
                    raise TooManyMembers(path)
                members = [(i.filename, i) for i in infos if not i.is_dir()]
                self._members(path, members, repo, lambda i: i.file_size, zf.read,
                              lambda i: (i.external_attr >> 16) & 0o170000 == _S_IFLNK)
        else:
            with tarfile.open(path, "r:*") as tf:
                members = []
                for m in tf:  # streamed, so a tar of a million members stops at the cap
                    if len(members) >= MAX_ARCHIVE_MEMBERS:
                        raise TooManyMembers(path)
                    if not m.isdir():
                        members.append((m.name, m))

                def read(m: tarfile.TarInfo) -> bytes:
                    f = tf.extractfile(m)
                    return f.read(m.size) if f else b""

                self._members(path, members, repo, lambda m: m.size, read, lambda m: not m.isfile())

    def _members(self, path, members, repo: RepoFiles, size_of, read, not_regular) -> None:
        safe = []
        for name, m in members:
            where = f"{path}:{name}"
            if has_surrogates(name):
                self.rules.note("invalid_utf8_name", where.encode("utf-8", "replace").decode())
            elif _unsafe(name):
                self.rules.note("unsafe_path", where)
            elif not_regular(m):
                is_link = isinstance(m, zipfile.ZipInfo) or m.issym() or m.islnk()
                self.rules.note("symlink" if is_link else "not_a_file", where)
            else:
                safe.append((name, m))
        rels = _strip_common_root([n for n, _ in safe])
        for rel, (name, m) in sorted(zip(rels, safe, strict=True), key=lambda r: order_key(r[0])):
            where = f"{path}:{name}"
            if not self.rules.keep_path(rel, where) or repo.past_cut(rel, where):
                continue
            if self.rules.too_large(size_of(m), where):
                continue
            text = self.rules.content(read(m), where)
            if text is not None:
                repo.add(rel, text, where)
