"""Language filter with a user-supplied local fastText model.

    filters:
      - {type: language, model: models/lid.176.bin, languages: [en], threshold: 0.65}

A document is kept when one of `languages` scores above `threshold` (or, with no
`languages`, when its best language does), the rule of datatrove's `LanguageFilter`; the
others are dropped as `wrong_language`. The prediction is datatrove's `FastTextLID.predict`
(newlines folded, `__label__xx` parsed); only the model loading differs: datatrove downloads
its model from a URL, and here nothing can be downloaded, so the model is the local file the
recipe names (fastText's lid.176.bin / .ftz, GlotLID, or your own). The detected language and
score are kept in the document's metadata.

Needs the `fasttext` module: `pip install fasttext-numpy2-wheel`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from datatrove.data import Document
from datatrove.utils.lid import FastTextLID

from mixcraft.errors import UserError
from mixcraft.schema import Range, RelPath

DEFAULT_THRESHOLD = 0.65


@dataclass(frozen=True, kw_only=True)
class LanguageConfig:
    model: RelPath  # a local fastText model (lid.176.bin / .ftz, GlotLID, ...)
    languages: tuple[str, ...] = ()  # e.g. [en]; empty: keep when the best language scores high enough
    threshold: Annotated[float, Range(ge=0, le=1)] = DEFAULT_THRESHOLD

    def input_problems(self) -> list[tuple[str, str]]:
        if not Path(self.model).is_file():
            return [("model", f"fastText model {self.model!r} not found; models cannot be downloaded during a "
                              "build: put the .bin/.ftz file there")]
        return []


class LocalFastTextLID(FastTextLID):
    """datatrove's fastText language identifier, loading a local model file."""

    def __init__(self, model_path: str, languages: list[str] | None = None):
        super().__init__(languages)
        self.model_path = model_path

    @property
    def model(self):
        if self._model is None:
            try:
                from fasttext.FastText import _FastText
            except ImportError:
                raise UserError("the language filter needs fastText: pip install fasttext-numpy2-wheel") from None
            try:
                self._model = _FastText(model_path=self.model_path)
            except ValueError as exc:  # fastText's "not a model file" error
                raise UserError(f"{self.model_path}: not a fastText model ({exc})") from None
        return self._model


class LanguageFilter:
    """`filter(doc)` -> True, or (False, "wrong_language"), as datatrove's filters answer."""

    def __init__(self, model: str, languages: list[str] | None = None, threshold: float = DEFAULT_THRESHOLD):
        self.languages = languages or None
        self.threshold = threshold
        self.lid = LocalFastTextLID(model, self.languages)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        (lang, score), pairs = self.lid.predict(doc)
        doc.metadata["language"], doc.metadata["language_score"] = lang, score
        if self.languages:
            keep = any(s > self.threshold for s in pairs.values())
        else:
            keep = score > self.threshold
        return True if keep else (False, "wrong_language")
