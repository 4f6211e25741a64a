"""Document filters configured per source in the recipe.

Quality filters are datatrove's own blocks (Gopher quality and repetition, C4, FineWeb), run
as they are; their drop reasons (e.g. `gopher_short_doc`) go to the ledger unchanged. Length
filters are ours: `min_chars`/`max_chars` run on text before tokenization, `min_tokens`/
`max_tokens` after it. `decontaminate` (curate/decontam.py, datatrove's n-gram filter) and
`language` (curate/language.py, a local fastText model) take a file path, resolved against
the recipe's folder.

    filters:
      - {type: min_chars, value: 200}
      - {type: gopher_quality, min_doc_words: 50}
      - {type: max_tokens, value: 2000000}
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datatrove.data import Document

TEXT_LENGTH = {"min_chars", "max_chars"}
TOKEN_LENGTH = {"min_tokens", "max_tokens"}
DATATROVE_FILTERS = {
    "gopher_quality": ("datatrove.pipeline.filters", "GopherQualityFilter"),
    "gopher_repetition": ("datatrove.pipeline.filters", "GopherRepetitionFilter"),
    "c4_quality": ("datatrove.pipeline.filters", "C4QualityFilter"),
    "fineweb_quality": ("datatrove.pipeline.filters", "FineWebQualityFilter"),
}
WITH_FILES = {"decontaminate", "language"}  # filters reading a user-given file
FILTER_TYPES = sorted(TEXT_LENGTH | TOKEN_LENGTH | set(DATATROVE_FILTERS) | WITH_FILES)


def _datatrove_class(ftype: str):
    import importlib

    module, name = DATATROVE_FILTERS[ftype]
    return getattr(importlib.import_module(module), name)


def check_filter_config(ctx: Any, where: str, cfg: Any, base: Path) -> None:
    import difflib
    import inspect

    if not isinstance(cfg, dict) or "type" not in cfg:
        raise ctx.fail(where, "expected a mapping with a `type` (e.g. {type: min_chars, value: 200})")
    ftype = cfg["type"]
    if ftype not in FILTER_TYPES:
        close = difflib.get_close_matches(str(ftype), FILTER_TYPES, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(FILTER_TYPES)}"
        raise ctx.fail(f"{where}.type", f"unknown filter {ftype!r} ({hint})")
    args = {k: v for k, v in cfg.items() if k != "type"}
    if ftype in WITH_FILES:
        from mixcraft.curate.decontam import check_decontam_config
        from mixcraft.curate.language import check_language_config

        check = check_decontam_config if ftype == "decontaminate" else check_language_config
        check(ctx, where, args, base)
        cfg.update(args)  # the file path, made absolute
        return
    if ftype in TEXT_LENGTH | TOKEN_LENGTH:
        if set(args) != {"value"} or isinstance(args["value"], bool) or not isinstance(args["value"], int):
            raise ctx.fail(where, f"{ftype} takes one integer `value`, got {args}")
        return
    params = inspect.signature(_datatrove_class(ftype).__init__).parameters
    allowed = sorted(p for p in params if p not in ("self", "exclusion_writer"))
    for key in args:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(allowed)}"
            raise ctx.fail(f"{where}.{key}", f"unknown parameter for {ftype} ({hint})")


@dataclass
class Filter:
    """One configured filter. `check` returns a drop reason, or None to keep."""

    ftype: str
    args: dict[str, Any]
    block: Any = None

    @property
    def on_tokens(self) -> bool:
        return self.ftype in TOKEN_LENGTH

    def check(self, doc: Document, n_tokens: int | None = None) -> str | None:
        t, v = self.ftype, self.args.get("value")
        if t == "min_chars":
            return "too_few_chars" if len(doc.text) < v else None
        if t == "max_chars":
            return "too_many_chars" if len(doc.text) > v else None
        if t == "min_tokens":
            return "too_few_tokens" if n_tokens < v else None
        if t == "max_tokens":
            return "too_many_tokens" if n_tokens > v else None
        result = self.block.filter(doc)
        keep, reason = result if isinstance(result, tuple) else (result, None)
        return None if keep else (reason or t)


def _make_block(ftype: str, args: dict[str, Any], work_dir: Path | None):
    if ftype in DATATROVE_FILTERS:
        return _datatrove_class(ftype)(**args)
    if ftype == "decontaminate":
        from mixcraft.curate.decontam import make_decontam_filter

        return make_decontam_filter(args, work_dir or Path(tempfile.mkdtemp(prefix="mixcraft-decontam-")))
    if ftype == "language":
        from mixcraft.curate.language import LanguageFilter

        return LanguageFilter(**args)
    return None


def build_filters(cfgs: list[dict[str, Any]], work_dir: Path | None = None) -> list[Filter]:
    """Filters ready to run; `work_dir` holds what they build on disk (the decontamination index)."""
    out = []
    for cfg in cfgs:
        args = {k: v for k, v in cfg.items() if k != "type"}
        out.append(Filter(cfg["type"], args, _make_block(cfg["type"], args, work_dir)))
    return out
