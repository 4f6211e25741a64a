"""The recipe as typed, frozen data: what `mixcraft build` makes, and from which sources.

    name: demo
    seq_len: 8192
    total_tokens: 2_900_000
    groups: {short: 0.37}
    sources:
      - {name: books, reader: {type: books, paths: [books]}, proportion: 0.3,
         buckets: [{min_tokens: 8192}]}

The dataclasses here are the schema (`mixcraft/schema.py` reads YAML into them); each checks
its own values. Readers and filters are plug-ins: a source's `reader` and `filters` are
`ReaderConfig`/`FilterConfig` subclasses that the readers and curate packages publish, picked
by their `type`. `resolve` turns the recipe as written into the recipe the build runs: bucket
defaults filled in, group-relative proportions made shares of the whole mixture, the
recipe-level `long_text` handed to sources, each curriculum stage's own recipe.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Literal

import yaml

from mixcraft.core.pack import PackingMode
from mixcraft.schema import Invalid, NonNegative, Positive, Range, Where, to_data

PROPORTION_TOLERANCE = 1e-6
MAX_REPEAT = 100  # beyond this a source is better fixed at its input than re-read 100 times
MAX_SEQ_LEN = 1 << 24  # 16M tokens; ProLong's longest rows are 512K
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
PREMIX_NAME = "premixed"  # where output.premix writes; no source may take the name


def check_name(value: str, what: str) -> None:
    """Names become folder names under OUT: letters, digits, `._-`, not starting with `.`."""
    if not NAME.match(value):
        raise Invalid(f"{value!r} is not a safe {what} name: use letters, digits, '.', '_' or '-', "
                      "starting with a letter or digit (it names a folder under the output)", "name")


class ReaderConfig:
    """A reader's parameters (a frozen dataclass in mixcraft/readers/); `type_name` is its `type`."""

    type_name: ClassVar[str]

    def input_problems(self) -> list[tuple[str, str]]:
        """(key, message) for inputs that are missing or unreadable, checked before a build reads
        anything (not at load time, so `--dry-run` works without the data)."""
        return []

    def describe(self) -> str:
        """Where the input comes from, in a few words, for `--dry-run`."""
        return ""


class FilterConfig:
    """A filter's parameters (a frozen dataclass in mixcraft/curate/filters.py)."""

    type_name: ClassVar[str]
    on_tokens: ClassVar[bool] = False  # runs after tokenization (sees token counts)

    def input_problems(self) -> list[tuple[str, str]]:
        return []


@dataclass(frozen=True, kw_only=True)
class Bucket:
    """Documents with at least `min_tokens` tokens (and fewer than the next bucket's minimum).

    With `min_tokens > 0` a document is cut into `chunk_tokens`-token chunks (the tail is
    counted, not packed), as ProLong's `--split_by_lengths` does; a row holds
    `seq_len // chunk_tokens` chunks. With `min_tokens == 0` documents are packed whole by the
    source's packing mode. Unset `chunk_tokens` and `name` are filled in by `resolve`.
    """

    min_tokens: Annotated[int, NonNegative]
    chunk_tokens: Annotated[int, Positive] | None = None
    proportion: Annotated[float, Positive] | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.name is not None:
            check_name(self.name, "bucket")


@dataclass(frozen=True, kw_only=True)
class LongText:
    """Llama 2 Long's knobs for documents of at least `min_tokens` tokens (mixcraft/core/mixture.py)."""

    min_tokens: Annotated[int, Positive]
    upsample: Annotated[float, Range(gt=0, le=MAX_REPEAT)] = 1.0
    remove: bool = False

    def __post_init__(self) -> None:
        if self.remove and self.upsample != 1.0:
            raise Invalid("`remove: true` drops long documents, so `upsample` has no effect; keep one of them")


@dataclass(frozen=True, kw_only=True)
class Source:
    name: str
    reader: ReaderConfig
    filters: tuple[FilterConfig, ...] = ()
    packing: PackingMode = "prolong"
    buckets: tuple[Bucket, ...] = ()
    proportion: Annotated[float, Positive] | None = None
    group: str | None = None
    tasks: Annotated[int, Range(ge=1, le=1_000_000)] = 1
    max_docs: Annotated[int, Positive] | None = None
    # Mixture knobs (mixcraft/core/mixture.py): expected uses per document, a token cap, long-text knobs.
    repeat: Annotated[float, Range(gt=0, le=MAX_REPEAT, hint="to leave a source out, remove it from the recipe")] = 1.0
    max_tokens: Annotated[int, Positive] | None = None
    long_text: LongText | None = None
    optional: bool = False  # a source that may end with no rows without failing the build
    group_share: float | None = field(default=None, metadata={"internal": True})  # set by resolve

    def __post_init__(self) -> None:
        check_name(self.name, "source")

    def bucket(self, name: str) -> Bucket:
        return next(b for b in self.buckets if b.name == name)


@dataclass(frozen=True, kw_only=True)
class Output:
    compression: Literal["zstd", "none"] = "zstd"
    # MDS offsets are uint32, so a shard holds at most 4 GiB; ProLong's released shards use 64 MiB.
    shard_size_bytes: Annotated[int, Range(ge=1 << 16, le=1 << 32)] = 1 << 26
    write_dropped: bool = False  # OUT/.mixcraft/dropped/<source>/<task>.jsonl: id, reason, excerpt
    premix: bool = False  # also write OUT/premixed/: every stream interleaved in exact proportions
    # The doc_ids/doc_offsets columns (mds.py): which document each span holds, so `inspect` can
    # name it. false: ProLong's columns only, the shards byte for byte what they were before.
    doc_ids: bool = True


@dataclass(frozen=True, kw_only=True)
class MinhashParams:
    """Near-duplicates: estimated Jaccard similarity of word n-gram sets >= threshold."""

    threshold: Annotated[float, Range(gt=0, le=1)] = 0.8
    n_grams: Annotated[int, Positive] = 5
    num_buckets: Annotated[int, Positive] = 14
    hashes_per_bucket: Annotated[int, Positive] = 8
    seed: int = 1


@dataclass(frozen=True, kw_only=True)
class Dedup:
    """Exact and MinHash near-duplicate removal across sources (mixcraft/curate/dedup.py)."""

    exact: bool = True
    minhash: MinhashParams | None = None
    sources: tuple[str, ...] | None = None  # default: every source
    # Tasks of the shuffle stages (exact partitions; MinHash bands x hash ranges); they never
    # change the verdicts. Default: one per read task of the deduplicated sources.
    tasks: Annotated[int, Range(ge=1, le=1_000_000)] | None = None

    def __post_init__(self) -> None:
        if not self.exact and self.minhash is None:
            raise Invalid("neither `exact: true` nor a `minhash:` block; remove `dedup:` or enable one")


@dataclass(frozen=True, kw_only=True)
class Validation:
    """Hold out a seeded fraction of each source's documents into `OUT/<source>/<bucket>/val`
    subsets, never trained on (mixcraft/build/steps.py: HoldOut)."""

    fraction: Annotated[float, Range(gt=0, le=0.5)]
    max_docs: Annotated[int, Positive] | None = None  # per source, shared over its tasks


@dataclass(frozen=True, kw_only=True)
class Stage:
    """One stage of a length curriculum (built by mixcraft/build/run.py, resolved by build/load.py)."""

    name: str
    seq_len: Annotated[int, Range(ge=1, le=MAX_SEQ_LEN)]
    share: Annotated[float, Range(gt=0, le=1)]

    def __post_init__(self) -> None:
        check_name(self.name, "stage")


@dataclass(frozen=True, kw_only=True)
class StageInfo:
    """Set on the recipe of one curriculum stage: which stage, and its share of documents."""

    name: str
    index: int
    of: int
    seq_len: int
    share: float
    lo: float
    hi: float


@dataclass(frozen=True, kw_only=True)
class Recipe:
    name: str
    seq_len: Annotated[int, Range(ge=1, le=MAX_SEQ_LEN)]
    sources: tuple[Source, ...]
    seed: int = 42
    tokenizer: str = "llama3"
    add_bos: bool = False
    add_eos: bool = False
    total_tokens: Annotated[int, Range(ge=1, le=10**15)] | None = None
    groups: dict[str, Annotated[float, Range(gt=0, le=1)]] = field(default_factory=dict)
    output: Output = field(default_factory=Output)
    dedup: Dedup | None = None
    long_text: LongText | None = None
    stages: tuple[Stage, ...] = ()
    validation: Validation | None = None
    # Set by `resolve` and the loader, never written in a recipe file:
    stage: StageInfo | None = field(default=None, metadata={"internal": True})
    stage_recipes: tuple[Recipe, ...] = field(default=(), metadata={"internal": True})
    path: str = field(default="", metadata={"internal": True})

    def __post_init__(self) -> None:
        check_name(self.name, "recipe")
        if not self.sources:
            raise Invalid("the recipe has no sources", "sources")

    def source(self, name: str) -> Source:
        return next(s for s in self.sources if s.name == name)

    def to_data(self) -> dict:
        data = to_data(self)
        if self.stage is not None:
            data["stage"] = dataclasses.asdict(self.stage)
        return data

    def digest(self) -> str:
        """sha256 of the resolved recipe: the identity of a build's inputs and settings."""
        text = yaml.safe_dump(self.to_data(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


# ---- resolve: the recipe as written -> the recipe the build runs -----------------------------


def resolve(recipe: Recipe, where: Where, stage: StageInfo | None = None) -> Recipe:
    """Fill bucket defaults, make proportions shares of the whole, hand down `long_text`, check
    what spans several keys. `where` names the file for errors."""
    names = [s.name for s in recipe.sources]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise where.at("sources").fail(f"source names repeat: {dup} (they name output directories; make them "
                                       "unique)")
    sources = [_resolve_source(s, recipe, where.at("sources").item(s.name)) for s in recipe.sources]
    sources = _resolve_groups(sources, recipe.groups, where)
    total = sum(s.proportion for s in sources)
    if abs(total - 1.0) > PROPORTION_TOLERANCE:
        listing = ", ".join(f"{s.name}={s.proportion:.4g}" for s in sources)
        raise where.at("sources").fail(f"proportions sum to {total:.6g}, not 1 ({listing}); adjust them to sum to 1")
    if recipe.output.premix and PREMIX_NAME in names:
        raise where.at("sources").item(PREMIX_NAME).fail("the name `premixed` is where output.premix writes; rename the source")
    if recipe.dedup is not None:
        for i, name in enumerate(recipe.dedup.sources or ()):
            if name not in names:
                raise where.at("dedup").at("sources").at(i).fail(f"no source named {name!r} (have: {', '.join(names)})")
    return dataclasses.replace(recipe, sources=tuple(sources), stage=stage)


def _resolve_source(s: Source, recipe: Recipe, where: Where) -> Source:
    buckets = _resolve_buckets(s.buckets, recipe.seq_len, where)
    with_prop = [b for b in buckets if b.proportion is not None]
    if with_prop and len(with_prop) != len(buckets):
        raise where.at("buckets").fail("give a proportion to every bucket or to none")
    if with_prop and s.proportion is not None:
        raise where.at("proportion").fail("the buckets carry proportions; remove the source-level one")
    if with_prop:
        proportion = sum(b.proportion for b in buckets)
    elif s.proportion is not None:
        proportion = s.proportion
    else:
        raise where.at("proportion").fail("required key is missing (a share of the mixture, e.g. 0.3)")
    if s.group is not None and s.group not in recipe.groups:
        raise where.at("group").fail(f"unknown group {s.group!r} (declare it under `groups:`)")
    long_text = s.long_text if s.long_text is not None else recipe.long_text
    return dataclasses.replace(s, buckets=tuple(buckets), proportion=proportion, long_text=long_text)


def _resolve_buckets(raw: tuple[Bucket, ...], seq_len: int, where: Where) -> list[Bucket]:
    if not raw:
        return [Bucket(name=str(seq_len), min_tokens=0, chunk_tokens=seq_len)]
    buckets = []
    for i, b in enumerate(raw):
        at = where.at("buckets").at(i)
        chunk = b.chunk_tokens if b.chunk_tokens is not None else (b.min_tokens or seq_len)
        if seq_len % chunk:
            raise at.at("chunk_tokens").fail(f"{chunk} must be positive and divide seq_len {seq_len}")
        if b.min_tokens and b.min_tokens < chunk:
            raise at.at("min_tokens").fail(f"{b.min_tokens} is below chunk_tokens {chunk}; a document must hold "
                                           "at least one chunk (raise min_tokens or lower chunk_tokens)")
        buckets.append(dataclasses.replace(b, chunk_tokens=chunk, name=b.name or str(chunk)))
    names = [b.name for b in buckets]
    if len(set(names)) != len(names):
        raise where.at("buckets").fail(f"bucket names repeat: {names} (give each a distinct 'name')")
    mins = [b.min_tokens for b in buckets]
    if len(set(mins)) != len(mins):
        raise where.at("buckets").fail(f"two buckets share min_tokens: {mins}")
    if 0 in mins and len(mins) > 1:
        raise where.at("buckets").fail("a min_tokens: 0 bucket packs every document whole; it cannot be mixed "
                                       "with length buckets in one source (split the source in two)")
    return sorted(buckets, key=lambda b: -b.min_tokens)


def _resolve_groups(sources: list[Source], groups: dict[str, float], where: Where) -> list[Source]:
    """Group-relative proportions (ProLong's ShortMix) become shares of the whole mixture."""
    out = list(sources)
    for gname, gshare in groups.items():
        members = [i for i, s in enumerate(out) if s.group == gname]
        if not members:
            raise where.at("groups").at(gname).fail("no source names this group (set `group:` on its sources)")
        total = sum(out[i].proportion for i in members)
        if abs(total - 1.0) > PROPORTION_TOLERANCE:
            listing = ", ".join(f"{out[i].name}={out[i].proportion:g}" for i in members)
            raise where.at("groups").at(gname).fail(f"member proportions sum to {total:.6g}, not 1 ({listing}); "
                                                    "inside a group, proportions are shares of the group")
        for i in members:
            s = out[i]
            buckets = tuple(b if b.proportion is None else dataclasses.replace(b, proportion=b.proportion * gshare)
                            for b in s.buckets)
            out[i] = dataclasses.replace(s, group_share=s.proportion, proportion=s.proportion * gshare,
                                         buckets=buckets)
    return out
