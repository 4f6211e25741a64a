"""Filters given by import path: a datatrove filter, any datatrove `PipelineStep`, or a user's
own class, with keyword arguments.

    filters:
      - {type: datatrove.pipeline.filters.RegexFilter, args: {regex_exp: "lorem ipsum"}}
      - {type: my_filters:NoTodo, args: {max_todos: 3}}      # a module on PYTHONPATH

`type` is `package.module.Class` or `package.module:Class`. The class is imported when the
recipe loads (so `--dry-run` checks it too): its arguments are checked against its signature
and its datatrove dependencies (`_requires_dependencies`) must be installed. Importing runs the
module's code: a recipe that names a plug-in is trusted like a script.

How a plug-in runs on each document (before tokenization, in recipe order with the other
filters):
- a class with a `filter(doc)` method (datatrove's `BaseFilter`) keeps the document when it
  returns True; False or `(False, reason)` drops it, counted in the ledger under `reason`
  (snake_case; the class name in snake_case when it gives none, `URLFilter` -> `url_filter`);
- any other `PipelineStep` runs over the one document (`run(iter([doc]))`): a document it
  does not yield back is dropped under the class name; one it yields, changed or not, goes on
  (a formatter may rewrite `doc.text`); yielding several documents is an error.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep

from mixcraft.core.recipe import FilterConfig
from mixcraft.errors import UserError
from mixcraft.schema import Invalid

Verdict = tuple[bool, str | None]
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
IMPORT_PATH = re.compile(rf"(?P<module>{_IDENT}(?:\.{_IDENT})*)(?::(?P<attr>{_IDENT})|\.(?P<last>{_IDENT}))")
# Arguments a YAML file cannot give (datatrove's exclusion_writer is a writer object).
_NOT_FROM_YAML = ("self", "exclusion_writer")


def looks_like_import_path(kind: str) -> bool:
    """A `type` that is not a built-in name is taken as an import path when it has a '.' or ':'."""
    return "." in kind or ":" in kind


def snake_case(name: str) -> str:
    """`URLFilter` -> `url_filter`, `Too short!` -> `too_short`: a ledger reason."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    return re.sub(r"[^a-z0-9]+", "_", spaced.lower()).strip("_") or "dropped"


def split_import_path(path: str) -> tuple[str, str]:
    """(module, class name) of `a.b.Class` or `a.b:Class`; `Invalid` for anything else."""
    m = IMPORT_PATH.fullmatch(path)
    if m is None:
        raise Invalid(f"{path!r} is neither a built-in filter nor an import path: write package.module.Class or "
                      "package.module:Class", "type")
    return m["module"], m["attr"] or m["last"]


def import_class(path: str) -> type:
    """The class an import path names; `Invalid` (one line) when it cannot be imported."""
    module_name, name = split_import_path(path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise Invalid(f"cannot import {module_name!r} ({exc}): install it, or put its folder on PYTHONPATH",
                      "type") from None
    except Exception as exc:  # the module's own code failed: say how, in one line
        raise Invalid(f"importing {module_name!r} failed: {type(exc).__name__}: {_first_line(exc)}", "type") from None
    cls = getattr(module, name, None)
    if cls is None:
        close = difflib.get_close_matches(name, [n for n in dir(module) if not n.startswith("_")], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise Invalid(f"module {module_name!r} has no {name!r}{hint}", "type")
    if not inspect.isclass(cls):
        raise Invalid(f"{path} is a {type(cls).__name__}, not a class", "type")
    if not (issubclass(cls, PipelineStep) or callable(getattr(cls, "filter", None))):
        raise Invalid(f"{path} is not a filter: give a datatrove PipelineStep (e.g. a BaseFilter subclass) or a "
                      "class with a filter(doc) method", "type")
    return cls


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


def check_dependencies(cls: type, path: str) -> None:
    """datatrove's own check (`_requires_dependencies` up the class tree), as one line with the
    `pip install` to run."""
    from datatrove.utils._import_utils import check_required_dependencies

    needed = [d for t in cls.__mro__ for d in getattr(t, "_requires_dependencies", [])]
    try:
        check_required_dependencies(cls.__name__, needed)
    except ImportError as exc:
        raise Invalid(f"{path}: {_first_line(exc)}", "type") from None


def check_args(cls: type, path: str, args: dict[str, Any]) -> None:
    """The keyword arguments against the class's signature: unknown, missing or positional-only."""
    # __init__, not the class: datatrove's PipelineStep.__new__ takes (*args, **kwargs) and would hide it.
    params = {} if cls.__init__ is object.__init__ else inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = {n: p for n, p in params.items()
             if n not in _NOT_FROM_YAML and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    for key in args:
        if key not in named and not takes_any:
            close = difflib.get_close_matches(key, list(named), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"it takes: {', '.join(named) or 'no arguments'}"
            raise Invalid(f"{path} has no parameter {key!r} ({hint})", f"args.{key}")
    missing = [n for n, p in named.items() if p.default is p.empty and n not in args]
    if missing:
        raise Invalid(f"{path} needs {', '.join(missing)} (give {'them' if len(missing) > 1 else 'it'} under args)",
                      "args")


@dataclass(frozen=True, kw_only=True)
class ImportedFilter(FilterConfig):
    """A plug-in filter; one subclass per import path (`plugin_class`), its `type_name` the path."""

    type_name: ClassVar[str]
    args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        cls = import_class(self.type_name)
        check_dependencies(cls, self.type_name)
        check_args(cls, self.type_name, self.args)

    def __reduce__(self):
        # The class is made at run time, so pickle (Ray, Slurm, process pools) rebuilds it by path.
        return _rebuild, (self.type_name, self.args)

    def make(self, work_dir: Path) -> Callable[[Document], Verdict]:
        cls = import_class(self.type_name)
        try:
            step = cls(**self.args)
        except Exception as exc:  # the user's constructor refused its arguments
            raise UserError(f"filter {self.type_name}: {type(exc).__name__}: {_first_line(exc)}") from None
        if callable(getattr(step, "filter", None)):
            return filter_check(step, snake_case(cls.__name__))
        return step_check(step, snake_case(cls.__name__))


_CLASSES: dict[str, type[ImportedFilter]] = {}


def plugin_class(path: str) -> type[ImportedFilter]:
    """The config class for one import path (made once per process; the import happens when an
    instance is made, so a bad path is reported with the recipe's YAML path)."""
    if path not in _CLASSES:
        _CLASSES[path] = type(f"ImportedFilter[{path}]", (ImportedFilter,), {"type_name": path})
    return _CLASSES[path]


def _rebuild(path: str, args: dict[str, Any]) -> ImportedFilter:
    return plugin_class(path)(args=args)


def filter_check(block: Any, default_reason: str) -> Callable[[Document], Verdict]:
    """A filter's `filter(doc)` (True, False, or (False, reason)) as a check; reasons in snake_case."""
    def check(doc: Document) -> Verdict:
        result = block.filter(doc)
        keep, reason = result if isinstance(result, tuple) else (result, None)
        return (True, None) if keep else (False, snake_case(reason) if reason else default_reason)

    return check


def step_check(step: PipelineStep, reason: str) -> Callable[[Document], Verdict]:
    """Any PipelineStep over one document: kept if it yields it back (its text and metadata as
    the step left them), dropped under `reason` if it yields nothing."""
    def check(doc: Document) -> Verdict:
        out: Iterator[Document] = step.run(iter([doc]), 0, 1)
        kept = list(out) if out is not None else []
        if len(kept) > 1:
            raise UserError(f"filter {type(step).__module__}.{type(step).__name__} turned document {doc.id} into "
                            f"{len(kept)} documents; a filter may keep, change or drop a document, not split it")
        if not kept:
            return False, reason
        if kept[0] is not doc:
            doc.text, doc.metadata = kept[0].text, kept[0].metadata
        return True, None

    return check


class FilterRegistry(Mapping):
    """The built-in filters by name; any other `type` with a '.' or ':' is an import path
    (`plugin_class`). Iterating lists the built-ins only (what an "unknown filter" hint offers)."""

    def __init__(self, builtins: dict[str, type[FilterConfig]]):
        self.builtins = builtins

    def __getitem__(self, kind: str) -> type[FilterConfig]:
        if kind in self.builtins:
            return self.builtins[kind]
        if isinstance(kind, str) and looks_like_import_path(kind):
            return plugin_class(kind)
        raise KeyError(kind)

    def __iter__(self) -> Iterator[str]:
        return iter(self.builtins)

    def __len__(self) -> int:
        return len(self.builtins)
