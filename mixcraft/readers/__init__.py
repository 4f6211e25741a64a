"""Readers turn a source's inputs into datatrove `Document`s, counting every skip.

Each reader publishes its parameters as a frozen dataclass (a `ReaderConfig`, picked by the
recipe's `reader: {type: ...}`) and lists its input *units* (files, repositories) in a fixed
order; task `i` of `n` reads units `i, i+n, i+2n, ...`, so the output depends on the recipe's
`tasks`, never on how many workers run them.
"""

from __future__ import annotations

from pathlib import Path

from mixcraft.core.ledger import Ledger
from mixcraft.core.recipe import ReaderConfig
from mixcraft.readers.base import Reader
from mixcraft.readers.books import BooksConfig, BooksReader
from mixcraft.readers.chat import ChatConfig, ChatReader
from mixcraft.readers.code_files import CodeFilesConfig, CodeFilesReader
from mixcraft.readers.code_repos import CodeReposConfig, CodeReposReader
from mixcraft.readers.hf import HFConfig, HFReader
from mixcraft.readers.text import TextConfig, TextReader

READERS: dict[type[ReaderConfig], type[Reader]] = {
    CodeReposConfig: CodeReposReader,
    CodeFilesConfig: CodeFilesReader,
    BooksConfig: BooksReader,
    TextConfig: TextReader,
    ChatConfig: ChatReader,
    HFConfig: HFReader,
}
# The recipe's `reader.type` -> its parameter class (what the recipe loader dispatches on).
READER_CONFIGS: dict[str, type[ReaderConfig]] = {cls.type_name: cls for cls in READERS}


def make_reader(source_name: str, cfg: ReaderConfig, ledger: Ledger, work_dir: Path | None = None, *,
                order_seed: int | None = None) -> Reader:
    """The reader of `cfg`; with `order_seed`, tasks take its units in a seeded order."""
    reader = READERS[type(cfg)](source_name, cfg, ledger, work_dir)
    reader.order_seed = order_seed
    return reader
