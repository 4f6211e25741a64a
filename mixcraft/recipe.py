"""Recipe schema and loader.

A recipe is one YAML file naming the tokenizer, the row length, and the sources with their
reader, filters, length buckets and mixture proportions. Every mistake is reported as one
line naming the file, the YAML path and the fix (`UserError`), never as a traceback.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mixcraft.errors import UserError

READER_TYPES = ("code_repos", "code_files", "books", "text", "chat", "hf")
PACKING_MODES = ("prolong", "best_fit", "concat_chunk")  # see mixcraft/core/pack.py
COMPRESSIONS = ("zstd", "none")
PROPORTION_TOLERANCE = 1e-6


@dataclass
class Bucket:
    """Documents with at least `min_tokens` tokens (and fewer than the next bucket's minimum).

    With `min_tokens > 0` a document is cut into `chunk_tokens`-token chunks (the tail is
    counted, not packed), as ProLong's `--split_by_lengths` does; a row holds
    `seq_len // chunk_tokens` chunks. With `min_tokens == 0` documents are packed whole by the
    source's packing mode.
    """

    name: str
    min_tokens: int
    chunk_tokens: int
    proportion: float | None = None


@dataclass
class Source:
    name: str
    reader: dict[str, Any]
    filters: list[dict[str, Any]]
    packing: str
    buckets: list[Bucket]
    proportion: float
    group: str | None = None
    group_share: float | None = None
    tasks: int = 1
    max_docs: int | None = None
    # Mixture knobs (mixcraft/core/mixture.py): expected uses per document, a token cap, long-text knobs.
    repeat: float = 1.0
    max_tokens: int | None = None
    long_text: dict[str, Any] | None = None


@dataclass
class Output:
    compression: str = "zstd"
    shard_size_bytes: int = 1 << 26  # ProLong's released shards use 64 MiB (67,108,864)
    write_dropped: bool = False  # OUT/.mixcraft/dropped/<source>/<task>.jsonl: id, reason, excerpt
    premix: bool = False  # also write OUT/premixed/: every stream interleaved in exact proportions


@dataclass
class Recipe:
    name: str
    seq_len: int
    sources: list[Source]
    seed: int = 42
    tokenizer: str = "llama3"
    add_bos: bool = False
    add_eos: bool = False
    total_tokens: int | None = None
    groups: dict[str, float] = field(default_factory=dict)
    output: Output = field(default_factory=Output)
    dedup: dict[str, Any] | None = None  # see mixcraft/curate/dedup.py
    long_text: dict[str, Any] | None = None
    stages: list[dict[str, Any]] = field(default_factory=list)  # a curriculum (mixcraft/build/curriculum.py)
    stage: dict[str, Any] | None = None  # set on the recipe of one curriculum stage
    path: str = ""

    def source(self, name: str) -> Source:
        for src in self.sources:
            if src.name == name:
                return src
        raise UserError(f"{self.path}: no source named {name!r} (have: {', '.join(s.name for s in self.sources)})")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("path")
        return data

    def digest(self) -> str:
        """sha256 of the resolved recipe: the identity of a build's inputs and settings."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


_TOP_KEYS = {
    "name": str, "seed": int, "tokenizer": str, "seq_len": int, "total_tokens": (int, type(None)),
    "add_bos": bool, "add_eos": bool, "groups": dict, "output": dict, "sources": list, "dedup": dict,
    "long_text": dict, "stages": list,
}
_SOURCE_KEYS = {
    "name": str, "reader": dict, "filters": list, "packing": str, "buckets": list,
    "proportion": (int, float), "group": str, "tasks": int, "max_docs": int,
    "repeat": (int, float), "max_tokens": int, "long_text": dict,
}
_BUCKET_KEYS = {"min_tokens": int, "chunk_tokens": int, "proportion": (int, float), "name": str}
_OUTPUT_KEYS = {"compression": str, "shard_size_bytes": int, "write_dropped": bool, "premix": bool}


def recipe_relative(raw: str, base: Path) -> Path:
    """A path from a recipe: `~` expanded, relative ones taken against the recipe's folder."""
    path = Path(raw).expanduser()
    return path if path.is_absolute() else base / path


class _Ctx:
    """Where we are in the YAML, for error messages."""

    def __init__(self, file: str):
        self.file = file

    def fail(self, where: str, msg: str) -> UserError:
        return UserError(f"{self.file}: {where}: {msg}")


def _type_name(t: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             dict: "a mapping", list: "a list", type(None): "null"}
    if isinstance(t, tuple):
        if int in t and float in t:
            t = tuple(x for x in t if x is not int)  # an int is a number too; say "a number" once
        return " or ".join(dict.fromkeys(names[x] for x in t if x is not type(None) or len(t) == 1))
    return names[t]


def check_keys(ctx: _Ctx, where: str, data: Any, schema: dict[str, Any], required: tuple[str, ...] = ()) -> None:
    """Reject unknown keys (with a "did you mean"), wrong types and missing required keys."""
    if not isinstance(data, dict):
        raise ctx.fail(where or "top level", f"expected a mapping, got {type(data).__name__}")
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in schema:
            close = difflib.get_close_matches(str(key), list(schema), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(sorted(schema))})"
            raise ctx.fail(path, f"unknown key '{key}'{hint}")
        want = schema[key]
        ok_types = want if isinstance(want, tuple) else (want,)
        # bool is an int subclass in Python; `seq_len: true` must still be an error.
        bad_bool = isinstance(value, bool) and bool not in ok_types
        if bad_bool or not isinstance(value, ok_types):
            fix = ""
            if isinstance(value, str) and float in ok_types:
                fix = " (write a plain number such as 0.3)"
            raise ctx.fail(path, f"expected {_type_name(want)}, got {value!r}{fix}")
    for key in required:
        if key not in data:
            raise ctx.fail(f"{where}.{key}" if where else key, "required key is missing")


def _parse_buckets(ctx: _Ctx, where: str, raw: list | None, seq_len: int) -> list[Bucket]:
    if not raw:
        return [Bucket(name=str(seq_len), min_tokens=0, chunk_tokens=seq_len)]
    buckets = []
    for i, b in enumerate(raw):
        path = f"{where}.buckets[{i}]"
        check_keys(ctx, path, b, _BUCKET_KEYS, required=("min_tokens",))
        chunk = b.get("chunk_tokens", b["min_tokens"] or seq_len)
        if chunk <= 0 or seq_len % chunk:
            raise ctx.fail(f"{path}.chunk_tokens", f"{chunk} must be positive and divide seq_len {seq_len}")
        if b["min_tokens"] < 0:
            raise ctx.fail(f"{path}.min_tokens", "must be >= 0")
        if b["min_tokens"] and b["min_tokens"] < chunk:
            raise ctx.fail(f"{path}.min_tokens", f"{b['min_tokens']} is below chunk_tokens {chunk}; "
                           "a document must hold at least one chunk (raise min_tokens or lower chunk_tokens)")
        buckets.append(Bucket(name=b.get("name", str(chunk)), min_tokens=b["min_tokens"], chunk_tokens=chunk,
                              proportion=b.get("proportion")))
    names = [b.name for b in buckets]
    if len(set(names)) != len(names):
        raise ctx.fail(f"{where}.buckets", f"bucket names repeat: {names} (give each a distinct 'name')")
    mins = [b.min_tokens for b in buckets]
    if len(set(mins)) != len(mins):
        raise ctx.fail(f"{where}.buckets", f"two buckets share min_tokens: {mins}")
    if 0 in mins and len(mins) > 1:
        raise ctx.fail(f"{where}.buckets", "a min_tokens: 0 bucket packs every document whole; it cannot be mixed "
                       "with length buckets in one source (split the source in two)")
    return sorted(buckets, key=lambda b: -b.min_tokens)


def _parse_source(ctx: _Ctx, i: int, raw: Any, seq_len: int, base: Path) -> Source:
    where = f"sources[{i}]"
    check_keys(ctx, where, raw, _SOURCE_KEYS, required=("name", "reader"))
    where = f"sources[{raw['name']}]"
    reader = dict(raw["reader"])
    rtype = reader.get("type")
    if rtype not in READER_TYPES:
        raise ctx.fail(f"{where}.reader.type", f"expected one of {', '.join(READER_TYPES)}, got {rtype!r}")
    from mixcraft.readers import check_reader_config  # readers know their own parameters

    check_reader_config(ctx, f"{where}.reader", reader, base)
    packing = raw.get("packing", "prolong")
    if packing not in PACKING_MODES:
        raise ctx.fail(f"{where}.packing", f"expected one of {', '.join(PACKING_MODES)}, got {packing!r}")
    filters = raw.get("filters", [])
    from mixcraft.curate.filters import check_filter_config

    for j, f in enumerate(filters):
        check_filter_config(ctx, f"{where}.filters[{j}]", f, base)
    buckets = _parse_buckets(ctx, where, raw.get("buckets"), seq_len)
    with_prop = [b for b in buckets if b.proportion is not None]
    if with_prop and len(with_prop) != len(buckets):
        raise ctx.fail(f"{where}.buckets", "give a proportion to every bucket or to none")
    if with_prop and "proportion" in raw:
        raise ctx.fail(f"{where}.proportion", "the buckets carry proportions; remove the source-level one")
    if with_prop:
        proportion = sum(b.proportion for b in buckets)
    elif "proportion" in raw:
        proportion = float(raw["proportion"])
    else:
        raise ctx.fail(f"{where}.proportion", "required key is missing (a share of the mixture, e.g. 0.3)")
    if raw.get("tasks", 1) < 1:
        raise ctx.fail(f"{where}.tasks", "must be >= 1")
    from mixcraft.core.mixture import parse_source_knobs

    return Source(name=raw["name"], reader=reader, filters=filters, packing=packing, buckets=buckets,
                  proportion=proportion, group=raw.get("group"), tasks=raw.get("tasks", 1),
                  **parse_source_knobs(ctx, where, raw))


def _resolve_proportions(ctx: _Ctx, recipe: Recipe) -> None:
    """Turn group-relative proportions into shares of the whole mixture; check they sum to 1."""
    for gname, gshare in recipe.groups.items():
        members = [s for s in recipe.sources if s.group == gname]
        if not members:
            raise ctx.fail(f"groups.{gname}", "no source names this group (set `group:` on its sources)")
        total = sum(s.proportion for s in members)
        if abs(total - 1.0) > PROPORTION_TOLERANCE:
            listing = ", ".join(f"{s.name}={s.proportion:g}" for s in members)
            raise ctx.fail(f"groups.{gname}", f"member proportions sum to {total:.6g}, not 1 ({listing}); "
                           "inside a group, proportions are shares of the group")
        for s in members:
            s.group_share = s.proportion
            s.proportion = s.proportion * gshare
            for b in s.buckets:
                if b.proportion is not None:
                    b.proportion *= gshare
    for s in recipe.sources:
        if s.group is not None and s.group not in recipe.groups:
            raise ctx.fail(f"sources[{s.name}].group", f"unknown group {s.group!r} (declare it under `groups:`)")
    total = sum(s.proportion for s in recipe.sources)
    if abs(total - 1.0) > PROPORTION_TOLERANCE:
        listing = ", ".join(f"{s.name}={s.proportion:.4g}" for s in recipe.sources)
        raise ctx.fail("sources", f"proportions sum to {total:.6g}, not 1 ({listing}); adjust them to sum to 1")


def parse_recipe(data: Any, file: str, base: Path) -> Recipe:
    ctx = _Ctx(file)
    check_keys(ctx, "", data, _TOP_KEYS, required=("name", "seq_len", "sources"))
    seq_len = data["seq_len"]
    if seq_len <= 0:
        raise ctx.fail("seq_len", f"must be positive, got {seq_len}")
    out_raw = data.get("output", {})
    check_keys(ctx, "output", out_raw, _OUTPUT_KEYS)
    output = Output(**out_raw)
    if output.compression not in COMPRESSIONS:
        raise ctx.fail("output.compression", f"expected zstd or none, got {output.compression!r}")
    groups = data.get("groups", {})
    for g, share in groups.items():
        if isinstance(share, bool) or not isinstance(share, (int, float)):
            raise ctx.fail(f"groups.{g}", f"expected a number, got {share!r}")
    if not data["sources"]:
        raise ctx.fail("sources", "the recipe has no sources")
    sources = [_parse_source(ctx, i, s, seq_len, base) for i, s in enumerate(data["sources"])]
    names = [s.name for s in sources]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ctx.fail("sources", f"source names repeat: {dup} (they name output directories; make them unique)")
    recipe = Recipe(
        name=data["name"], seq_len=seq_len, sources=sources, seed=data.get("seed", 42),
        tokenizer=data.get("tokenizer", "llama3"), add_bos=data.get("add_bos", False),
        add_eos=data.get("add_eos", False), total_tokens=data.get("total_tokens"),
        groups={k: float(v) for k, v in groups.items()}, output=output, path=file,
    )
    if "dedup" in data:
        from mixcraft.curate.dedup import check_dedup_config

        recipe.dedup = check_dedup_config(ctx, data["dedup"], names)
    _resolve_proportions(ctx, recipe)
    from mixcraft.build.curriculum import parse_stages
    from mixcraft.core.mixture import apply_recipe_knobs

    apply_recipe_knobs(ctx, recipe, data)
    parse_stages(ctx, recipe, data, base)
    return recipe


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: recipe file not found (check the path; recipes live in recipes/)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}{line}: not valid YAML: {problem}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text; save the recipe as UTF-8") from None
    return parse_recipe(data, str(path), path.resolve().parent)


def write_resolved(recipe: Recipe, path: Path) -> None:
    header = f"# {recipe.path} with every default filled in; proportions are shares of the whole mixture.\n"
    path.write_text(header + yaml.safe_dump(recipe.to_dict(), sort_keys=False), encoding="utf-8")
