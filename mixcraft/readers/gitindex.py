"""The files a git clone tracks, read from its index (`.git/index`) without running git.

Running `git ls-files` on a clone nobody on the team wrote runs that clone's own configuration:
its `core.fsmonitor` command executes on every ls-files, and other keys (`include.path`,
hooks) reach outside the clone. Reading the index file ourselves runs nothing and reads
nothing but `.git/index`. The format (git's Documentation/gitformat-index.txt): a 12-byte
header (`DIRC`, version 2, 3 or 4, entry count), then per entry 40 bytes of stat data, the
object id (20 bytes, or 32 in a SHA-256 repository), 16 bits of flags, 16 more in version 3+
when the entry is "extended", and the path: NUL-terminated and padded to 8 bytes (v2, v3), or
prefix-compressed against the previous path (v4). Extensions follow; a split index (`link`)
keeps part of its entries in another file, which we do not follow.
"""

from __future__ import annotations

import struct
from pathlib import Path

MAX_INDEX_BYTES = 256 << 20  # the Linux kernel's index is about 10 MB for 80,000 files
_STAT_BYTES = 40
_GITLINK = 0o160000  # a submodule: its files live in another repository
_DIR_MODE = 0o040000  # a sparse index's directory entry (not checked out)


class UnreadableIndex(ValueError):
    """The index cannot be read; the message is the snake_case reason counted in the ledger."""


def tracked_files(root: Path) -> tuple[list[str], list[str]]:
    """(regular paths, submodule paths) the index of the clone at `root` tracks, sorted.
    Raises `UnreadableIndex` with a reason when the index is missing, foreign or damaged."""
    git = root / ".git"
    if git.is_symlink() or not git.is_dir():
        raise UnreadableIndex("git_dir_not_followed")  # a `gitdir:` file or a link points outside the clone
    index = git / "index"
    if index.is_symlink() or not index.is_file():
        raise UnreadableIndex("git_index_missing")
    if index.stat().st_size > MAX_INDEX_BYTES:
        raise UnreadableIndex("git_index_too_large")
    data = index.read_bytes()
    for oid_bytes in (20, 32):  # SHA-1, then SHA-256 repositories
        try:
            return _parse(data, oid_bytes)
        except (struct.error, IndexError, UnicodeDecodeError, ValueError):
            continue
    raise UnreadableIndex("git_index_unreadable")


def _parse(data: bytes, oid_bytes: int) -> tuple[list[str], list[str]]:
    signature, version, count = struct.unpack_from(">4sLL", data, 0)
    if signature != b"DIRC" or version not in (2, 3, 4):
        raise ValueError("not a git index")
    pos, prev = 12, b""
    files: set[str] = set()
    links: set[str] = set()
    for _ in range(count):
        start = pos
        mode = struct.unpack_from(">L", data, pos + 24)[0]
        pos += _STAT_BYTES + oid_bytes
        flags = struct.unpack_from(">H", data, pos)[0]
        pos += 2
        if version >= 3 and flags & 0x4000:
            pos += 2
        if version == 4:
            strip, pos = _varint(data, pos)
            end = data.index(b"\0", pos)
            if strip > len(prev):
                raise ValueError("bad prefix")
            name = prev[:len(prev) - strip] + data[pos:end]
            pos = end + 1
        else:
            end = data.index(b"\0", pos)
            name = data[pos:end]
            pos = start + ((end - start) // 8 + 1) * 8  # 1 to 8 NULs pad the entry to 8 bytes
        prev = name
        path = name.decode("utf-8")
        if mode == _DIR_MODE:
            raise ValueError("sparse index")
        (links if mode == _GITLINK else files).add(path)
    _check_extensions(data, pos, oid_bytes)
    return sorted(files), sorted(links)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """git's offset varint (each continuation adds one before shifting)."""
    byte = data[pos]
    value = byte & 0x7F
    pos += 1
    while byte & 0x80:
        byte = data[pos]
        value = ((value + 1) << 7) | (byte & 0x7F)
        pos += 1
    return value, pos


def _check_extensions(data: bytes, pos: int, oid_bytes: int) -> None:
    """Walk the extensions up to the trailing checksum; refuse a split index."""
    end = len(data) - oid_bytes
    while pos < end:
        signature, size = struct.unpack_from(">4sL", data, pos)
        if signature == b"link":
            raise ValueError("split index")
        pos += 8 + size
    if pos != end:
        raise ValueError("trailing bytes")


def safe_relpath(path: str) -> bool:
    """A path the index may name: relative, without `..`, empty or `.git` parts."""
    return all(p not in ("", ".", "..") and p.lower() != ".git" for p in path.split("/"))
