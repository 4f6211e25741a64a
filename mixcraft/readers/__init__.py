"""Readers turn a source's inputs into datatrove `Document`s, counting every skip.

Each reader lists its input *units* (files, repositories) in a fixed order; task `i` of `n`
reads units `i, i+n, i+2n, ...`, so the output depends on the recipe's `tasks`, never on how
many workers run them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mixcraft.readers.base import Reader
from mixcraft.readers.books import BooksReader
from mixcraft.readers.chat import ChatReader
from mixcraft.readers.code_files import CodeFilesReader
from mixcraft.readers.code_repos import CodeReposReader
from mixcraft.readers.hf import HFReader
from mixcraft.readers.text import TextReader

READERS: dict[str, type[Reader]] = {
    "code_repos": CodeReposReader,
    "code_files": CodeFilesReader,
    "books": BooksReader,
    "text": TextReader,
    "chat": ChatReader,
    "hf": HFReader,
}


def check_reader_config(ctx: Any, where: str, cfg: dict[str, Any], base: Path) -> None:
    """Validate a reader block in place: known keys, types, and local paths made absolute."""
    from mixcraft.recipe import check_keys

    cls = READERS[cfg["type"]]
    check_keys(ctx, where, cfg, {"type": str, **cls.params}, required=("type", *cls.required))
    if "paths" in cls.params and "dataset" in cls.params and ("paths" in cfg) == ("dataset" in cfg):
        raise ctx.fail(where, "give exactly one of `paths` (local files) or `dataset` (a hub dataset)")
    if "paths" in cfg:
        cfg["paths"] = [_resolve_path(ctx, f"{where}.paths[{i}]", p, base) for i, p in enumerate(cfg["paths"])]
        for i, p in enumerate(cfg["paths"]):
            _check_format(ctx, f"{where}.paths[{i}]", Path(p), cls)
    if "header" in cfg:
        try:
            cfg["header"].format(path="x")
        except (KeyError, IndexError, ValueError):
            raise ctx.fail(f"{where}.header", f"{cfg['header']!r}: the only placeholder is {{path}} "
                           "(write literal braces as {{ and }})") from None
    if cfg["type"] == "chat":
        from mixcraft.core.chat import TEMPLATE_CHOICES

        if cfg.get("template", "llama3") not in TEMPLATE_CHOICES:
            raise ctx.fail(f"{where}.template", f"expected one of {', '.join(TEMPLATE_CHOICES)}, "
                           f"got {cfg['template']!r}")
        if "chat_template" in cfg:
            cfg["chat_template"] = _resolve_path(ctx, f"{where}.chat_template", cfg["chat_template"], base)


def _check_format(ctx: Any, where: str, path: Path, cls: type[Reader]) -> None:
    """A file named directly must be one the reader can read (folders are searched instead)."""
    if not path.is_file():
        return
    if cls is CodeReposReader:
        raise ctx.fail(where, f"{path.name} is a file; code_repos takes folders holding repositories "
                       "(subfolders, git clones or archives), so name the folder that holds it")
    suffixes = getattr(cls, "suffixes", ())
    if suffixes and not path.name.endswith(suffixes):
        raise ctx.fail(where, f"{path.name}: unsupported format for a {cls.__name__.removesuffix('Reader')} "
                       f"source (it reads {', '.join(suffixes)})")


def _resolve_path(ctx: Any, where: str, raw: Any, base: Path) -> str:
    if not isinstance(raw, str):
        raise ctx.fail(where, f"expected a path string, got {raw!r}")
    from mixcraft.recipe import recipe_relative

    path = recipe_relative(raw, base)
    if any(ch in raw for ch in "*?["):
        if not any(Path(path.anchor).glob(str(path.relative_to(path.anchor)))):
            raise ctx.fail(where, f"glob {raw!r} matches nothing (relative paths are resolved against the "
                           f"recipe's folder {base})")
        return str(path)
    if not path.exists():
        raise ctx.fail(where, f"path {raw!r} does not exist (resolved to {path}; relative paths are resolved "
                       "against the recipe's folder; run `make demo` once to fetch the demo data)")
    return str(path.resolve())


def make_reader(source_name: str, cfg: dict[str, Any], ledger: Any, work_dir: Path | None = None) -> Reader:
    return READERS[cfg["type"]](source_name, cfg, ledger, work_dir)
