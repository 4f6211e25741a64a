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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar

from datatrove.data import Document

from mixcraft.readers.base import Unit, decode_text, looks_binary
from mixcraft.readers.text import JSONL_SUFFIXES, PARQUET_SUFFIXES, RecordParams, RecordReader
from mixcraft.schema import Positive

_START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", re.MULTILINE | re.IGNORECASE)
_END = re.compile(r"^\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG.*$", re.MULTILINE | re.IGNORECASE)
MAX_BOOK_BYTES = 256 << 20


@dataclass(frozen=True, kw_only=True)
class BooksConfig(RecordParams):
    type_name: ClassVar[str] = "books"
    suffixes: ClassVar[tuple[str, ...]] = (".txt",) + JSONL_SUFFIXES + PARQUET_SUFFIXES
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

    def read_unit(self, unit: Unit) -> Iterator[Document]:
        if unit.path.endswith(".txt"):
            yield from self._read_txt(Path(unit.path))
        else:
            yield from super().read_unit(unit)

    def record_docs(self, where: str, record: dict) -> Iterator[Document]:
        text = self.record_text(record, where)
        if text is None:
            return
        self.ledger.read()
        yield self.doc(self._strip(text), self.record_id(record, where), where=where)

    def _read_txt(self, path: Path) -> Iterator[Document]:
        where = str(path)
        try:
            if path.stat().st_size > self.cfg.max_book_bytes:
                self.ledger.skip("too_large", where)
                return
            data = path.read_bytes()
        except OSError:
            self.ledger.skip("unreadable", where)
            return
        text = None if looks_binary(data) else decode_text(data)
        if text is None:
            self.ledger.skip("binary" if looks_binary(data) else "invalid_utf8", where)
            return
        if not text.strip():
            self.ledger.skip("empty", where)
            return
        self.ledger.read()
        yield self.doc(self._strip(text), f"{self.source}/{path.stem}", where=where)

    def _strip(self, text: str) -> str:
        if not self.cfg.strip_gutenberg:
            return text
        body, head, foot = strip_gutenberg(text)
        if head:
            self.ledger.note("gutenberg_header")
        if foot:
            self.ledger.note("gutenberg_footer")
        return body
