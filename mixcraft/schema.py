"""The one way mixcraft reads a config file: YAML -> frozen dataclasses, every mistake one line.

Recipes (`mixcraft build`), trainer configs (`mixcraft train`) and synth configs
(`mixcraft synth`) are all loaded here. A config is described by dataclasses; this module
walks their type hints:

- scalars (`int`, `float`, `str`, `bool`), `X | None`, `Literal[...]`, `list[X]`,
  `tuple[X, ...]`, `dict[str, X]` and nested dataclasses;
- `Annotated[X, Range(...)]` bounds a number (finite, gt/ge/lt/le);
- `RelPath` is a path written relative to the config file's folder (`~` expanded; a URL such
  as `s3://...` or `file://...` is kept as written);
- a field typed with a plug-in base class (a reader, a filter) is a tagged union: its `type`
  key picks the class from the registry the caller passes in. Plug-ins only publish their
  dataclass; they never import this loader's caller.

A dataclass checks what types cannot say in `__post_init__`, raising `Invalid(msg, key)`;
the loader adds the file and the YAML path. Every error is a `UserError`:

    recipes/typo.yaml: sources[books].propotion: unknown key 'propotion' (did you mean 'proportion'?)

`--set a.b=value` overrides (`with_overrides`) are applied to the parsed YAML before
checking, so they get the same checks and messages. Duplicate keys and alias bombs are
refused while parsing.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml

from mixcraft.errors import UserError

MAX_EXPANDED_NODES = 100_000  # values a file may hold once aliases are expanded ("billion laughs")
MAX_CONFIG_BYTES = 4 << 20


class Invalid(Exception):
    """Raised by a config dataclass's `__post_init__`: `key` is the field at fault (None: the
    whole block)."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.message, self.key = message, key


@dataclass(frozen=True)
class Range:
    """Bounds for `Annotated[int | float, Range(...)]`; numbers must also be finite."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    hint: str | None = None  # said after the error, e.g. how to get what the user wanted

    def check(self, v: float) -> str | None:
        if isinstance(v, float) and not math.isfinite(v):
            return f"must be a finite number, got {v}"
        for bound, ok, word in ((self.gt, lambda b: v > b, ">"), (self.ge, lambda b: v >= b, ">="),
                                (self.lt, lambda b: v < b, "<"), (self.le, lambda b: v <= b, "<=")):
            if bound is not None and not ok(bound):
                return f"must be {word} {bound:g}, got {v:g}" + (f" ({self.hint})" if self.hint else "")
        return None


class _RelPathMarker:
    pass


RelPath = Annotated[str, _RelPathMarker()]
"""A path relative to the config file's folder; loaded as an absolute path string."""

Positive = Range(gt=0)
NonNegative = Range(ge=0)


@dataclass(frozen=True)
class Where:
    """A place in a config file: the file and the YAML path inside it."""

    file: str
    path: str = ""
    base: Path = Path(".")  # the folder relative paths are taken against

    def at(self, key: Any) -> Where:
        if isinstance(key, int):
            return dataclasses.replace(self, path=f"{self.path}[{key}]")
        return dataclasses.replace(self, path=f"{self.path}.{key}" if self.path else str(key))

    def item(self, label: str) -> Where:
        return dataclasses.replace(self, path=f"{self.path}[{label}]")

    def fail(self, message: str) -> UserError:
        return UserError(f"{self.file}: {self.path or 'top level'}: {message}")


# ---- reading YAML --------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and files whose aliases expand past a bound, and
    reads YAML 1.2 exponent floats (`1e-5`, `8.0e6`) as numbers: YAML 1.1 wants a dot and a
    signed exponent (`1.0e+6`), so plain `lr: 1e-5` would otherwise load as a string."""

    def compose_document(self) -> Any:
        node = super().compose_document()
        sizes: dict[int, int] = {}

        def size(n: Any) -> int:  # values once every alias is expanded; shared nodes counted once each use
            if id(n) not in sizes:
                sizes[id(n)] = 0  # a recursive alias refers to itself: count it once
                if isinstance(n, yaml.MappingNode):
                    sizes[id(n)] = 1 + sum(size(k) + size(v) for k, v in n.value)
                elif isinstance(n, yaml.SequenceNode):
                    sizes[id(n)] = 1 + sum(size(v) for v in n.value)
                else:
                    sizes[id(n)] = 1
            return sizes[id(n)]

        if node is not None and size(node) > MAX_EXPANDED_NODES:
            raise yaml.constructor.ConstructorError(
                None, None, f"aliases (*name) expand to {size(node):,} values, more than {MAX_EXPANDED_NODES:,}; "
                "write the values out", node.start_mark)
        return node

    def construct_mapping(self, node: Any, deep: bool = False) -> dict:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key].line + 1}); keep one",
                    key_node.start_mark)
            if isinstance(key, typing.Hashable):
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path, what: str) -> Any:
    """Parse a YAML file; a missing file, bad YAML or bad bytes are one-line `UserError`s."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found (check the path)")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise UserError(f"{path}: {path.stat().st_size:,} bytes is too large for a {what} "
                        f"(at most {MAX_CONFIG_BYTES:,})")
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}{line}: not valid YAML: {problem}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text; save the {what} as UTF-8") from None


def with_overrides(raw: Any, overrides: list[str] | tuple[str, ...], file: str) -> Any:
    """Apply `key.sub=value` overrides (values read as YAML) to a parsed config."""
    if not overrides:
        return raw
    if not isinstance(raw, dict):
        raise UserError(f"{file}: top level: expected a mapping, got {type(raw).__name__}")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.steps=5")
        parts = key.strip().split(".")
        node = raw
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part) if isinstance(node, dict) else None
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise UserError(f"--set {item!r}: {'.'.join(parts[:i + 1])} is not a mapping")
            node = nxt
        try:
            node[parts[-1]] = yaml.load(value, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
        except yaml.YAMLError:
            node[parts[-1]] = value
    return raw


_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


# ---- building dataclasses ------------------------------------------------------------------

Registries = Mapping[type, Mapping[str, type]]


def parse(cls: type, raw: Any, where: Where, registries: Registries | None = None) -> Any:
    """Build dataclass `cls` from parsed YAML; every mistake is a `UserError` naming `where`."""
    return _Parser(registries or {}).dataclass(cls, raw, where)


def load(cls: type, path: Path, what: str, *, overrides: list[str] | tuple[str, ...] = (),
         registries: Registries | None = None) -> Any:
    """`read_yaml` + overrides + `parse`, paths relative to the file's folder."""
    path = Path(path)
    raw = with_overrides(read_yaml(path, what), overrides, str(path))
    return parse(cls, raw, Where(str(path), "", path.resolve().parent), registries)


def type_name(cls: type) -> str | None:
    """The `type` a plug-in class answers to (its `type_name` class attribute)."""
    return getattr(cls, "type_name", None)


def to_data(obj: Any) -> Any:
    """A config dataclass back to plain YAML data (tagged classes get their `type` first)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        if (name := type_name(type(obj))) is not None:
            out["type"] = name
        for f in dataclasses.fields(obj):
            if f.metadata.get("internal"):
                continue
            out[f.name] = to_data(getattr(obj, f.name))
        return out
    if isinstance(obj, (list, tuple)):
        return [to_data(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_data(v) for k, v in obj.items()}
    return obj


_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}


def describe(hint: Any) -> str:
    """`int | None` -> 'an integer or null', for error messages."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return "a path string" if any(isinstance(a, _RelPathMarker) for a in args[1:]) else describe(args[0])
    if origin in (Union, types.UnionType):
        parts = [a for a in args if not (a is int and float in args)]  # an int is a number too
        return " or ".join(dict.fromkeys(describe(a) for a in parts))
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(hint):
        return "a mapping"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def _show(v: Any) -> str:
    return repr(v) if isinstance(v, (str, int, float, bool)) or v is None else type(v).__name__


class _Parser:
    def __init__(self, registries: Registries):
        self.registries = registries

    def dataclass(self, cls: type, raw: Any, where: Where) -> Any:
        if not isinstance(raw, dict):
            raise where.fail(f"expected a mapping, got {_show(raw)}")
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init and not f.metadata.get("internal")}
        hints = typing.get_type_hints(cls, include_extras=True)
        extra = getattr(cls, "extra_args", None)  # a plug-in that takes free keyword arguments
        values: dict[str, Any] = {}
        free: dict[str, Any] = {}
        for key, value in raw.items():
            if key == "type" and type_name(cls) is not None:
                continue
            if key not in fields:
                if extra is not None:
                    free[str(key)] = value
                    continue
                close = difflib.get_close_matches(str(key), list(fields), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(sorted(fields))})"
                raise where.at(key).fail(f"unknown key '{key}'{hint}")
            values[key] = self.value(hints[key], value, where.at(key))
        for name, f in fields.items():
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required and name not in values and name != extra:
                raise where.at(name).fail("required key is missing")
        if extra is not None:  # `{type: x, k: v}` and `{type: x, args: {k: v}}` both give k
            given = values.get(extra) or {}
            if twice := sorted(set(given) & set(free)):
                raise where.at(twice[0]).fail(f"given twice, at the top and under `{extra}`; keep one")
            values[extra] = {**given, **free}
        try:
            return cls(**values)
        except Invalid as bad:
            raise (where.at(bad.key) if bad.key else where).fail(bad.message) from None

    def value(self, hint: Any, v: Any, where: Where) -> Any:
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin is Annotated:
            return self._annotated(args, v, where)
        if origin in (Union, types.UnionType):
            if v is None and type(None) in args:
                return None
            options = [a for a in args if a is not type(None)]
            if len(options) == 1:
                return self.value(options[0], v, where)
            for a in options:
                try:
                    return self.value(a, v, where)
                except UserError:
                    continue
            raise where.fail(f"expected {describe(hint)}, got {_show(v)}")
        if origin is Literal:
            if v in args and not (isinstance(v, bool) and not any(isinstance(a, bool) for a in args)):
                return v
            close = difflib.get_close_matches(str(v), [str(a) for a in args], n=1)
            hint_text = f" (did you mean '{close[0]}'?)" if close else ""
            raise where.fail(f"expected one of {', '.join(str(a) for a in args)}, got {_show(v)}{hint_text}")
        if origin in (list, tuple):
            if not isinstance(v, list):
                raise where.fail(f"expected a list, got {_show(v)}")
            item = args[0]
            items = [self.value(item, x, self._item_where(where, i, x)) for i, x in enumerate(v)]
            return tuple(items) if origin is tuple else items
        if origin is dict:
            if not isinstance(v, dict):
                raise where.fail(f"expected a mapping, got {_show(v)}")
            out = {}
            for k, x in v.items():
                if not isinstance(k, str):
                    raise where.at(str(k)).fail(f"keys must be strings, got {_show(k)}")
                out[k] = self.value(args[1], x, where.at(k))
            return out
        if isinstance(hint, type) and hint in self.registries:
            return self._tagged(hint, v, where)
        if dataclasses.is_dataclass(hint):
            return self.dataclass(hint, v, where)
        return self._scalar(hint, v, where)

    @staticmethod
    def _item_where(where: Where, i: int, x: Any) -> Where:
        name = x.get("name") if isinstance(x, dict) else None
        return where.item(name) if isinstance(name, str) and name else where.at(i)

    def _annotated(self, args: tuple, v: Any, where: Where) -> Any:
        base, marks = args[0], args[1:]
        if any(isinstance(m, _RelPathMarker) for m in marks):
            if not isinstance(v, str) or not v:
                raise where.fail(f"expected a path string, got {_show(v)}")
            if "\0" in v:
                raise where.fail("a path cannot contain a NUL byte")
            if _URL.match(v):  # s3://, gs://, file://: already absolute, and not a local path
                return v
            path = Path(v).expanduser()
            return str(path if path.is_absolute() else where.base / path)
        value = self.value(base, v, where)
        for m in marks:
            if isinstance(m, Range) and isinstance(value, (int, float)) and not isinstance(value, bool):
                if (problem := m.check(value)) is not None:
                    raise where.fail(problem)
        return value

    def _tagged(self, base: type, v: Any, where: Where) -> Any:
        registry = self.registries[base]
        kinds = sorted(registry)
        if not isinstance(v, dict) or "type" not in v:
            raise where.fail(f"expected a mapping with a `type` (one of {', '.join(kinds)}), got {_show(v)}")
        kind = v["type"]
        cls = registry.get(kind) if isinstance(kind, str) else None
        if cls is None:
            close = difflib.get_close_matches(str(kind), kinds, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(kinds)}"
            raise where.at("type").fail(f"unknown {base.__name__.removesuffix('Config').lower()} "
                                        f"type {kind!r} ({hint})")
        return self.dataclass(cls, v, where)

    @staticmethod
    def _scalar(hint: Any, v: Any, where: Where) -> Any:
        if hint is Any:
            return v
        if isinstance(v, bool) and hint is not bool:  # bool is an int subclass; `seq_len: true` is a mistake
            raise where.fail(f"expected {describe(hint)}, got {_show(v)}")
        if hint is float:
            if isinstance(v, (int, float)):
                v = float(v)
                if not math.isfinite(v):
                    raise where.fail(f"must be a finite number, got {v}")
                return v
            fix = " (write a plain number such as 0.3)" if isinstance(v, str) else ""
            raise where.fail(f"expected a number, got {_show(v)}{fix}")
        if hint is int:
            if isinstance(v, int):
                return v
            if isinstance(v, float) and v.is_integer() and abs(v) < 2**63:
                return int(v)  # 4.0e6 tokens
            fix = " (write a whole number such as 4096)" if isinstance(v, (str, float)) else ""
            raise where.fail(f"expected an integer, got {_show(v)}{fix}")
        if hint is str:
            if isinstance(v, str):
                return v
            raise where.fail(f"expected a string, got {_show(v)}")
        if hint is bool:
            if isinstance(v, bool):
                return v
            raise where.fail(f"expected true or false, got {_show(v)}")
        if isinstance(hint, type) and isinstance(v, hint):
            return v
        raise where.fail(f"expected {describe(hint)}, got {_show(v)}")
