"""Hugging Face hub (or local) datasets, one document per record, read by data file.

`dataset` is a hub id (`HuggingFaceFW/fineweb-edu`), a local folder laid out like a hub
repository, or a builder name with `data_files` (`parquet`, `json`). Its data files are resolved
in the build's prepare pass and spread over the tasks (see `readers/datafiles.py`); `--dry-run`
never touches the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mixcraft.readers.text import RecordParams, RecordReader
from mixcraft.schema import Invalid


@dataclass(frozen=True, kw_only=True)
class HFConfig(RecordParams):
    type_name: ClassVar[str] = "hf"

    def __post_init__(self) -> None:
        if self.dataset is None:
            raise Invalid("required key is missing (a hub dataset id, or a builder such as parquet)", "dataset")
        super().__post_init__()

    def describe(self) -> str:
        return self.describe_hub()


class HFReader(RecordReader):
    """`hf`: the `text` reader over a hub dataset."""
