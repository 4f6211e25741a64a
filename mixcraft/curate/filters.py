"""Document filters configured per source in the recipe: a registry of parameter classes, each
making one check, a callable that returns `(keep, reason)`.

    filters:
      - {type: min_chars, value: 200}
      - {type: gopher_quality, min_doc_words: 50}
      - {type: max_tokens, value: 2000000}

Quality filters are datatrove's own blocks (Gopher quality and repetition, C4, FineWeb), run
as they are; their drop reasons (e.g. `gopher_short_doc`) go to the ledger unchanged. Length
filters are ours: `min_chars`/`max_chars` run on text before tokenization, `min_tokens`/
`max_tokens` after it. `decontaminate` (curate/decontam.py, datatrove's n-gram filter) and
`language` (curate/language.py, a local fastText model) take a file path, relative to the
recipe's folder. Any other filter, datatrove's or a user's, is named by its import path with its
keyword arguments (`{type: datatrove.pipeline.filters.URLFilter, args: {...}}`; curate/plugins.py).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

from datatrove.data import Document

from mixcraft.core.pack import TokDoc
from mixcraft.core.recipe import FilterConfig
from mixcraft.curate.decontam import DecontaminateConfig, make_decontam_filter
from mixcraft.curate.language import LanguageConfig, LanguageFilter
from mixcraft.curate.plugins import FilterRegistry
from mixcraft.schema import Invalid, NonNegative

Verdict = tuple[bool, str | None]
TextCheck = Callable[[Document], Verdict]
TokenCheck = Callable[[TokDoc], Verdict]


@dataclass(frozen=True, kw_only=True)
class LengthLimit(FilterConfig, ABC):
    """A bound on characters (before tokenization) or tokens (after)."""

    value: Annotated[int, NonNegative]
    reason: ClassVar[str]

    @abstractmethod
    def too_far(self, n: int) -> bool:
        """Whether a length of `n` is past the bound (`min_*`: below it, `max_*`: above it)."""

    def make(self, work_dir: Path) -> Callable[[Any], Verdict]:
        if self.on_tokens:
            return lambda doc: (False, self.reason) if self.too_far(len(doc.ids)) else (True, None)
        return lambda doc: (False, self.reason) if self.too_far(len(doc.text)) else (True, None)


@dataclass(frozen=True, kw_only=True)
class MinChars(LengthLimit):
    type_name: ClassVar[str] = "min_chars"
    reason: ClassVar[str] = "too_few_chars"

    def too_far(self, n: int) -> bool:
        return n < self.value


@dataclass(frozen=True, kw_only=True)
class MaxChars(LengthLimit):
    type_name: ClassVar[str] = "max_chars"
    reason: ClassVar[str] = "too_many_chars"

    def too_far(self, n: int) -> bool:
        return n > self.value


@dataclass(frozen=True, kw_only=True)
class MinTokens(LengthLimit):
    type_name: ClassVar[str] = "min_tokens"
    reason: ClassVar[str] = "too_few_tokens"
    on_tokens: ClassVar[bool] = True

    def too_far(self, n: int) -> bool:
        return n < self.value


@dataclass(frozen=True, kw_only=True)
class MaxTokens(LengthLimit):
    type_name: ClassVar[str] = "max_tokens"
    reason: ClassVar[str] = "too_many_tokens"
    on_tokens: ClassVar[bool] = True

    def too_far(self, n: int) -> bool:
        return n > self.value


def run_datatrove_filter(block: Any, default_reason: str) -> TextCheck:
    """A datatrove filter's `filter(doc)` (True, False, or (False, reason)) as a check."""
    def check(doc: Document) -> Verdict:
        result = block.filter(doc)
        keep, reason = result if isinstance(result, tuple) else (result, None)
        return (True, None) if keep else (False, reason or default_reason)

    return check


@dataclass(frozen=True, kw_only=True)
class DatatroveFilter(FilterConfig):
    """One of datatrove's quality filters, its keyword arguments checked against its signature."""

    extra_args: ClassVar[str] = "args"
    block_path: ClassVar[str]  # "module:Class"
    args: dict[str, Any] = field(default_factory=dict)

    def block_class(self) -> type:
        module, name = self.block_path.split(":")
        return getattr(importlib.import_module(module), name)

    def __post_init__(self) -> None:
        params = inspect.signature(self.block_class().__init__).parameters
        allowed = sorted(p for p in params if p not in ("self", "exclusion_writer"))
        for key in self.args:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(allowed)}"
                raise Invalid(f"unknown parameter for {self.type_name} ({hint})", key)

    def make(self, work_dir: Path) -> TextCheck:
        return run_datatrove_filter(self.block_class()(**self.args), self.type_name)


@dataclass(frozen=True, kw_only=True)
class GopherQuality(DatatroveFilter):
    type_name: ClassVar[str] = "gopher_quality"
    block_path: ClassVar[str] = "datatrove.pipeline.filters:GopherQualityFilter"


@dataclass(frozen=True, kw_only=True)
class GopherRepetition(DatatroveFilter):
    type_name: ClassVar[str] = "gopher_repetition"
    block_path: ClassVar[str] = "datatrove.pipeline.filters:GopherRepetitionFilter"


@dataclass(frozen=True, kw_only=True)
class C4Quality(DatatroveFilter):
    type_name: ClassVar[str] = "c4_quality"
    block_path: ClassVar[str] = "datatrove.pipeline.filters:C4QualityFilter"


@dataclass(frozen=True, kw_only=True)
class FineWebQuality(DatatroveFilter):
    type_name: ClassVar[str] = "fineweb_quality"
    block_path: ClassVar[str] = "datatrove.pipeline.filters:FineWebQualityFilter"


@dataclass(frozen=True, kw_only=True)
class Decontaminate(DecontaminateConfig, FilterConfig):
    type_name: ClassVar[str] = "decontaminate"

    def make(self, work_dir: Path) -> TextCheck:
        return run_datatrove_filter(make_decontam_filter(self, work_dir), "contaminated")


@dataclass(frozen=True, kw_only=True)
class Language(LanguageConfig, FilterConfig):
    type_name: ClassVar[str] = "language"

    def make(self, work_dir: Path) -> TextCheck:
        return run_datatrove_filter(LanguageFilter(self.model, list(self.languages), self.threshold), "wrong_language")


# The built-ins by name; any other `type` with a '.' or ':' is a plug-in's import path (curate/plugins.py).
FILTERS = FilterRegistry({cls.type_name: cls for cls in (
    MinChars, MaxChars, MinTokens, MaxTokens, GopherQuality, GopherRepetition, C4Quality, FineWebQuality,
    Decontaminate, Language)})


@dataclass(frozen=True)
class Filter:
    """A configured filter ready to run: its name, whether it sees tokens, and its check."""

    name: str
    on_tokens: bool
    check: Callable[[Any], Verdict]


def build_filters(cfgs: tuple[FilterConfig, ...], work_dir: Path) -> list[Filter]:
    """The checks of a source's filters; `work_dir` holds what they build on disk (decontamination
    index)."""
    return [Filter(cfg.type_name, cfg.on_tokens, cfg.make(work_dir)) for cfg in cfgs]
