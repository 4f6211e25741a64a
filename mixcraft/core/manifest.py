"""`OUT/manifest.json` and `OUT/curriculum.json` as typed, versioned data, and the only code
that reads or writes them.

The manifest records what a build made and how: the recipe's identity, the tokenizer, every
(source, bucket) stream with its counts and length histograms, each source's ledger and
mixture summary, the sha1 and size of every shard and the sha256 of every `index.json` (what
`verify` and the trainer check), the pre-mixed stream, and `content_sha256`, a digest of the
manifest's own content, so an edit after the build is caught (`read_manifest` refuses it).

A manifest of another version is refused with one line naming both versions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from mixcraft import __version__
from mixcraft.core.lengths import LengthHistogram
from mixcraft.core.outdir import OutLayout, write_atomic
from mixcraft.core.recipe import LongText
from mixcraft.errors import UserError
from mixcraft.schema import Where, parse, to_data

MANIFEST_VERSION = 2  # 1: mixcraft 0.1.0's untyped manifest (no `manifest_version` key)


@dataclass(frozen=True, kw_only=True)
class Histogram:
    """A length histogram (`core/lengths.py`): 8 log-spaced bins per doubling."""

    bins_per_octave: int
    counts: dict[str, int]
    n: int
    sum: int
    min: int | None
    max: int | None

    @classmethod
    def of(cls, hist: LengthHistogram) -> Histogram:
        return cls(**hist.to_dict())

    def load(self) -> LengthHistogram:
        return LengthHistogram.from_dict(dataclasses.asdict(self))


EMPTY_HISTOGRAM = Histogram.of(LengthHistogram())


@dataclass(frozen=True, kw_only=True)
class DocCounts:
    read: int
    kept: int
    split: int
    dropped: dict[str, int]


@dataclass(frozen=True, kw_only=True)
class TokenCounts:
    kept: int
    packed: int
    tail: int
    dropped: dict[str, int]


@dataclass(frozen=True, kw_only=True)
class LedgerSummary:
    """A source's ledger summed over its tasks (`core/ledger.py` says what each count means)."""

    docs: DocCounts
    tokens: TokenCounts
    notes: dict[str, int]
    examples: dict[str, list[str]]
    budget_reached: bool


@dataclass(frozen=True, kw_only=True)
class SubsetPart:
    """A held-out validation subset of a stream (`OUT/<source>/<bucket>/val`)."""

    path: str
    rows: int
    tokens: int
    docs: int


@dataclass(frozen=True, kw_only=True)
class Stream:
    """One (source, bucket) MDS subset."""

    source: str
    bucket: str
    path: str  # relative to OUT, e.g. "books/65536"
    proportion: float  # the share of the mixture a trainer should give it
    target_proportion: float
    target_tokens: float | None
    domain: str
    mask: bool
    packing: str
    rows: int
    tokens: int
    pieces: int
    docs: int
    split: int
    tail_tokens: int
    padding: int
    doc_lengths: Histogram = EMPTY_HISTOGRAM
    row_pieces: Histogram = EMPTY_HISTOGRAM
    row_fill_pct: dict[str, int] = field(default_factory=dict)
    validation: SubsetPart | None = None


@dataclass(frozen=True, kw_only=True)
class SourceSummary:
    """A source's mixture: knobs, budget, passes, copies, tasks that met their budget share, and
    the lengths of every document offered to its buckets."""

    proportion: float
    budget_tokens: float | None
    bucket_proportions: dict[str, float | None]  # None: the buckets share the source's
    bucket_min_tokens: dict[str, int]
    repeat: float
    max_tokens: int | None
    max_docs: int | None
    long_text: LongText | None
    passes: int
    docs_repeated: int
    tokens_repeated: int
    tasks: int
    tasks_budget_reached: int
    seen_lengths: Histogram = EMPTY_HISTOGRAM


@dataclass(frozen=True, kw_only=True)
class ShardDigest:
    basename: str
    bytes: int
    hash: str | None  # sha1 written by MDSWriter
    samples: int


@dataclass(frozen=True, kw_only=True)
class TokenizerInfo:
    name: str
    file: str | None
    file_sha256: str
    vocab_size: int
    backend: str


@dataclass(frozen=True, kw_only=True)
class RecipeRef:
    name: str
    path: str
    sha256: str


@dataclass(frozen=True, kw_only=True)
class PremixStream:
    path: str
    domain: str
    proportion: float
    rows: int
    tokens: int
    rows_available: int


@dataclass(frozen=True, kw_only=True)
class Premix:
    """`OUT/premixed/`: every stream interleaved in exact proportions (build/premix.py)."""

    path: str
    rows: int
    tokens: int
    pieces: int
    mask: bool
    prolong_stream: str
    streams: list[PremixStream]
    left_out: list[str]


@dataclass(frozen=True, kw_only=True)
class Manifest:
    manifest_version: int
    mixcraft_version: str
    recipe: RecipeRef
    tokenizer: TokenizerInfo
    seed: int
    seq_len: int
    total_tokens: int | None
    streams: list[Stream]
    # ProLong's trainer takes `--tokenized_mds_train OUT/<path>@<proportion>` (training/dataset.py)
    prolong_streams: list[str]
    ledger: dict[str, LedgerSummary]
    sources: dict[str, SourceSummary]
    shards: dict[str, list[ShardDigest]]  # subset path -> its shards
    indexes: dict[str, str] = field(default_factory=dict)  # subset path -> sha256 of its index.json
    premixed: Premix | None = None
    content_sha256: str = ""

    @classmethod
    def of_subsets(cls, *, name: str, seq_len: int, tokenizer: TokenizerInfo, streams: list[Stream],
                   shards: dict[str, list[ShardDigest]], seed: int = 0) -> Manifest:
        """A manifest for MDS subsets written outside a build (test fixtures, benchmarks): no
        recipe, ledger or mixture summary."""
        return cls(manifest_version=MANIFEST_VERSION, mixcraft_version=__version__,
                   recipe=RecipeRef(name=name, path="", sha256=""), tokenizer=tokenizer, seed=seed, seq_len=seq_len,
                   total_tokens=None, streams=streams, prolong_streams=[f"{s.path}@{s.proportion:.6g}" for s in streams],
                   ledger={}, sources={}, shards=shards)

    def stream(self, path: str) -> Stream:
        return next(s for s in self.streams if s.path == path)

    def source_streams(self, source: str) -> list[Stream]:
        return [s for s in self.streams if s.source == source]

    def packed_tokens(self) -> int:
        return sum(s.tokens for s in self.streams)


def content_digest(data: dict) -> str:
    """sha256 of a manifest's JSON content without its own `content_sha256`."""
    body = {k: v for k, v in data.items() if k != "content_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_manifest(out: Path, manifest: Manifest) -> Manifest:
    """Write OUT/manifest.json atomically, with its content digest; returns what was written."""
    data = to_data(manifest)
    data["content_sha256"] = content_digest(data)
    write_atomic(OutLayout(out).manifest, json.dumps(data, indent=1) + "\n")
    return dataclasses.replace(manifest, content_sha256=data["content_sha256"])


def _load_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); re-run the build to rewrite it") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a mixcraft {what} (expected a JSON object)")
    return data


def content_faults(out: Path) -> list[str]:
    """An edit of manifest.json after the build, as a fault message (for `verify`)."""
    path = OutLayout(out).manifest
    if not path.is_file():
        return []
    data = _load_json(path, "manifest")
    if data.get("content_sha256") != content_digest(data):
        return [f"{path}: edited after the build (its content digest differs from the one the build wrote)"]
    return []


def read_manifest(out: Path, *, check_digest: bool = True) -> Manifest:
    """OUT/manifest.json, typed. Refuses a missing, foreign, other-version or edited manifest."""
    path = OutLayout(out).manifest
    if not path.is_file():
        hint = " It is a curriculum: give one stage's folder, e.g. OUT/<stage>." if OutLayout(out).curriculum.is_file() \
            else ""
        raise UserError(f"{out}: no manifest.json here (is this a `mixcraft build` output folder, and did the "
                        f"build finish?){hint}")
    return parse_manifest(_load_json(path, "manifest"), str(path), check_digest=check_digest)


def parse_manifest(data: dict, where: str, *, check_digest: bool = True) -> Manifest:
    """A manifest from its JSON content (read locally or from a remote store); `where` names it."""
    version = data.get("manifest_version", 1)
    if version != MANIFEST_VERSION:
        by = data.get("mixcraft_version", "an unknown mixcraft")
        raise UserError(f"{where}: manifest version {version} (written by mixcraft {by}); this mixcraft reads "
                        f"version {MANIFEST_VERSION}: rebuild with this mixcraft, or read it with the one that wrote it")
    if check_digest and data.get("content_sha256") != content_digest(data):
        raise UserError(f"{where}: edited after the build (its content digest differs); rebuild, or set mixture "
                        "weights in the train config's data.proportions instead of editing the manifest")
    return parse(Manifest, data, Where(where))


@dataclass(frozen=True, kw_only=True)
class CurriculumStage:
    name: str
    path: str
    seq_len: int
    share: float
    target_tokens: int | None
    tokens: int
    rows: int


@dataclass(frozen=True, kw_only=True)
class Curriculum:
    """`OUT/curriculum.json`: a length curriculum's stages in training order."""

    recipe: RecipeRef
    total_tokens: int | None
    stages: list[CurriculumStage]


def write_curriculum(out: Path, curriculum: Curriculum) -> None:
    write_atomic(OutLayout(out).curriculum, json.dumps(to_data(curriculum), indent=1) + "\n")


def read_curriculum(out: Path) -> Curriculum | None:
    """OUT/curriculum.json, or None where OUT is not a curriculum."""
    path = OutLayout(out).curriculum
    if not path.is_file():
        return None
    return parse(Curriculum, _load_json(path, "curriculum"), Where(str(path)))


def is_curriculum(out: Path) -> bool:
    layout = OutLayout(out)
    return layout.curriculum.is_file() and not layout.manifest.is_file()
