"""Input files named in a recipe's `paths`: local files, folders and globs, or fsspec URLs
(`s3://`, `gs://`, `hf://`, `memory://`; `file://` is a local path), listed in a fixed order.

Local listing never leaves a matched root through a symlink: a link met while walking a folder,
matched by a glob, or standing between a glob's fixed prefix and a match (`data/*/x.jsonl` with
`data/evil -> /etc`) is counted as `symlink` and not read. Only a file named directly in `paths`
is read even if it is a link: the recipe's author chose it. Remote file systems have no links.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mixcraft.core.records import is_url

GLOB_CHARS = "*?["
Note = Callable[[str, str], None]


@dataclass(frozen=True)
class Unit:
    """One piece of input a task reads whole: a file, a repository, a partition."""

    key: str
    path: str  # a local path or an fsspec URL
    size_bytes: int
    row_groups: tuple[int, int] | None = None  # a Parquet file's row groups [first, stop); None: all


def has_surrogates(text: str) -> bool:
    """A lone surrogate (JSON's "\\ud800", or a file name of invalid UTF-8 bytes decoded with
    surrogateescape) is not text: encoding it for the tokenizer, a hash or a shard would fail.
    (isascii, then a UTF-8 encode: 10x faster than a regex search on a large document.)"""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def has_glob(path: str) -> bool:
    return any(c in path for c in GLOB_CHARS)


def local_path(raw: str) -> str:
    """`file:///data/x` -> `/data/x`; other strings unchanged."""
    return raw[len("file://"):] if raw.startswith("file://") else raw


def is_remote(raw: str) -> bool:
    return is_url(raw) and not raw.startswith("file://")


def list_files(paths: tuple[str, ...], suffixes: tuple[str, ...], note: Note | None = None) -> list[Unit]:
    """Files under `paths` ending in `suffixes` (all files when empty), sorted by path; other
    files are counted as `unsupported_format`, links as `symlink` (see the module's rules), names
of invalid UTF-8 bytes as `invalid_utf8_name`."""
    note = note or (lambda reason, where: None)
    found: dict[str, Unit] = {}
    for raw in paths:
        remote = is_remote(raw)
        listing = _remote_files(raw) if remote else _local_files(local_path(raw), note)
        root = None if remote else _root_of(local_path(raw))
        for path, size in listing:
            if has_surrogates(path):
                note("invalid_utf8_name", path.encode("utf-8", "replace").decode())
            elif suffixes and not path.endswith(suffixes):
                note("unsupported_format", path)
            else:
                # The key a seeded order hashes: the path below its `paths` entry, so the same
                # data sampled from another folder or machine is the same sample.
                key = path if root is None else os.path.relpath(path, root)
                found[path] = Unit(key=key, path=path, size_bytes=size)
    return [found[k] for k in sorted(found)]


def _root_of(raw: str) -> Path:
    """What a `paths` entry's files are named relative to: the folder itself, a file's folder,
    or a glob's fixed leading folders."""
    if has_glob(raw):
        return _glob_root(raw)
    return Path(raw) if Path(raw).is_dir() else Path(raw).parent


def expand_paths(paths: tuple[str, ...], suffixes: tuple[str, ...], note: Note | None = None) -> list[Path]:
    """The local files of `list_files` as paths (URLs are not accepted here)."""
    return [Path(u.path) for u in list_files(paths, suffixes, note)]


def _local_files(raw: str, note: Note) -> Iterator[tuple[str, int]]:
    if not has_glob(raw):
        p = Path(raw)
        if p.is_dir():
            yield from _walk(p, note)
        elif p.is_file():
            yield str(p), p.stat().st_size
        elif p.exists():
            note("not_a_file", raw)
        return
    anchor = _glob_root(raw)
    for m in sorted(glob.glob(raw)):
        p = Path(m)
        if p.is_symlink() or _link_between(anchor, p):
            note("symlink", m)
        elif p.is_dir():
            yield from _walk(p, note)
        elif p.is_file():
            yield m, p.stat().st_size
        else:
            note("not_a_file", m)


def _glob_root(pattern: str) -> Path:
    """The folder a glob starts from: its components before the first one with a glob character."""
    parts = Path(pattern).parts
    fixed = [p for p in parts[:next(i for i, p in enumerate(parts) if has_glob(p))]]
    return Path(*fixed) if fixed else Path(".")


def _link_between(root: Path, path: Path) -> bool:
    """Whether a folder between `root` and `path` is a symlink (glob.glob follows them)."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        return True
    current = root
    for part in rel.parts[:-1]:
        current = current / part
        if current.is_symlink():
            return True
    return False


def _walk(root: Path, note: Note) -> Iterator[tuple[str, int]]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for name in sorted([*filenames, *links]):
            f = Path(dirpath) / name
            if f.is_symlink():
                note("symlink", str(f))
            elif f.is_file():
                yield str(f), f.stat().st_size
            else:  # a FIFO, socket or device: reading it could block forever
                note("not_a_file", str(f))


def _remote_files(url: str) -> Iterator[tuple[str, int]]:
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(url)
    if has_glob(root):
        entries = fs.glob(root, detail=True)
    elif fs.isdir(root):
        entries = fs.find(root, detail=True)
    else:
        entries = {root: fs.info(root)}
    for name, info in sorted(entries.items()):
        if info.get("type") == "directory":
            for sub, sub_info in sorted(fs.find(name, detail=True).items()):
                yield fs.unstrip_protocol(sub), int(sub_info.get("size") or 0)
        else:
            yield fs.unstrip_protocol(name), int(info.get("size") or 0)


def path_problems(paths: tuple[str, ...], suffixes: tuple[str, ...], reader: str) -> list[tuple[str, str]]:
    """(key, message) for each path that matches nothing or names a file the reader cannot read."""
    problems = []
    for i, raw in enumerate(paths):
        message = _remote_problem(raw) if is_remote(raw) else _local_problem(local_path(raw), suffixes, reader)
        if message:
            problems.append((f"paths[{i}]", message))
    return problems


def _local_problem(raw: str, suffixes: tuple[str, ...], reader: str) -> str | None:
    if has_glob(raw):
        if not glob.glob(raw):
            return f"glob {raw!r} matches nothing (relative paths are taken against the recipe's folder)"
    elif not Path(raw).exists():
        return f"path {raw!r} does not exist (relative paths are taken against the recipe's folder)"
    elif Path(raw).is_file() and suffixes and not raw.endswith(suffixes):
        return f"{Path(raw).name}: unsupported format for a {reader} source (it reads {', '.join(suffixes)})"
    return None


def _remote_problem(url: str) -> str | None:
    """Why `url` cannot be listed (a missing fsspec back end names its pip package), or None."""
    try:
        if not any(True for _ in _remote_files(url)):
            return f"{url!r} matches no file"
    except ImportError as exc:  # fsspec: "Install s3fs to access S3"
        return f"{url!r}: {exc} (pip install it into the build's environment)"
    except FileNotFoundError:
        return f"{url!r} does not exist"
    except Exception as exc:  # network and credential errors come in many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"{url!r}: cannot be listed ({first})"
    return None
