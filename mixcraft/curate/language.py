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

from pathlib import Path
from typing import Any

from datatrove.data import Document
from datatrove.utils.lid import FastTextLID

from mixcraft.errors import UserError

PARAMS = {"model": str, "languages": list, "threshold": (int, float)}
DEFAULT_THRESHOLD = 0.65


def check_language_config(ctx: Any, where: str, args: dict[str, Any], base: Path) -> None:
    from mixcraft.recipe import check_keys, recipe_relative

    check_keys(ctx, where, args, PARAMS, required=("model",))
    path = recipe_relative(args["model"], base)
    if not path.is_file():
        raise ctx.fail(f"{where}.model", f"fastText model {args['model']!r} not found (resolved to {path}); "
                       "models cannot be downloaded during a build: put the .bin/.ftz file there")
    if not all(isinstance(x, str) for x in args.get("languages", [])):
        raise ctx.fail(f"{where}.languages", f"expected language codes such as [en], got {args['languages']}")
    if not 0 <= args.get("threshold", DEFAULT_THRESHOLD) <= 1:
        raise ctx.fail(f"{where}.threshold", f"must be in [0, 1], got {args['threshold']}")
    args["model"] = str(path.resolve())


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
