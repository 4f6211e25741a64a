"""Books: one `.txt` file per book, or records of JSONL/Parquet files or an HF dataset
(SlimPajama style: `dataset: cerebras/SlimPajama-627B` with
`where: {meta.redpajama_set_name: RedPajamaBook}` keeps the book subset; other records are
counted as `not_selected` notes).

Project Gutenberg texts carry a licence header and footer around the book; with
`strip_gutenberg: true` (the default) they are cut at the `*** START OF ...` and
`*** END OF ...` lines, and each cut is counted (notes `gutenberg_header`/`gutenberg_footer`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, ClassVar

from datatrove.data import Document

from mixcraft.readers.text import JSONL_SUFFIXES, PARQUET_SUFFIXES, TXT_SUFFIX, RecordParams, RecordReader
from mixcraft.schema import Positive

_START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", re.MULTILINE | re.IGNORECASE)
_END = re.compile(r"^\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG.*$", re.MULTILINE | re.IGNORECASE)
MAX_BOOK_BYTES = 256 << 20


@dataclass(frozen=True, kw_only=True)
class BooksConfig(RecordParams):
    type_name: ClassVar[str] = "books"
    suffixes: ClassVar[tuple[str, ...]] = (TXT_SUFFIX,) + JSONL_SUFFIXES + PARQUET_SUFFIXES
    strip_gutenberg: bool = True
    max_book_bytes: Annotated[int, Positive] = MAX_BOOK_BYTES


def strip_gutenberg(text: str) -> tuple[str, bool, bool]:
    """The book between Gutenberg's START and END markers; flags say which cuts were made."""
    start = _START.search(text)
    end = _END.search(text, start.end() if start else 0)
    body = text[start.end() if start else 0: end.start() if end else len(text)]
    return body.strip("\n\r ") + "\n", bool(start), bool(end)


class BooksReader(RecordReader):
    cfg: BooksConfig

    def txt_limit(self) -> int:
        return self.cfg.max_book_bytes

    def text_doc(self, text: str, doc_id: str, where: str) -> Document:
        return self.doc(self._strip(text), doc_id, where=where)

    def _strip(self, text: str) -> str:
        if not self.cfg.strip_gutenberg:
            return text
        body, head, foot = strip_gutenberg(text)
        if head:
            self.ledger.note("gutenberg_header")
        if foot:
            self.ledger.note("gutenberg_footer")
        return body
