"""Hugging Face hub (or local) datasets through `datasets`, streamed, split across tasks.

`dataset` is a hub id (`HuggingFaceFW/fineweb-edu`) or a builder name with `data_files`
(`parquet`, `json`). Nothing is downloaded before the build runs: `--dry-run` never touches
the network.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from datatrove.data import Document

from mixcraft.core.ledger import Ledger
from mixcraft.core.recipe import ReaderConfig
from mixcraft.core.records import get_field
from mixcraft.errors import UserError
from mixcraft.readers.base import HubParams, Reader, Unit
from mixcraft.schema import Invalid


@dataclass(frozen=True, kw_only=True)
class HFConfig(HubParams, ReaderConfig):
    type_name: ClassVar[str] = "hf"
    text_field: str = "text"
    id_field: str = "id"

    def __post_init__(self) -> None:
        if self.dataset is None:
            raise Invalid("required key is missing (a hub dataset id, or a builder such as parquet)", "dataset")

    def describe(self) -> str:
        return self.describe_hub()


def hf_records(cfg: HubParams, task: int, n_tasks: int, ledger: Ledger) -> Iterator[tuple[str, dict]]:
    """(where, record) for this task's share of the dataset."""
    import datasets
    from datasets.distributed import split_dataset_by_node

    name = cfg.dataset
    try:
        ds = datasets.load_dataset(name, cfg.config, split=cfg.split, data_files=cfg.data_files,
                                   revision=cfg.revision, streaming=cfg.streaming)
    except Exception as exc:  # datasets raises many types (ConnectionError, FileNotFoundError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"dataset {name!r}: cannot be loaded ({first}); check the id and your network, "
                        "or download it and point `data_files` at the local files") from None
    ds = split_dataset_by_node(ds, rank=task, world_size=n_tasks)
    where_filter = cfg.where
    for i, record in enumerate(ds):
        if where_filter and not all(get_field(record, k) == v for k, v in where_filter.items()):
            ledger.note("not_selected")
            continue
        yield f"{name}[{task}/{n_tasks}]#{i}", record


class HFReader(Reader):
    cfg: HFConfig

    def list_units(self) -> list[Unit]:
        return [Unit(key=self.cfg.dataset, path=self.cfg.dataset, size_bytes=0)]

    def active_tasks(self, n_tasks: int) -> int:
        return n_tasks  # `datasets` splits a streamed dataset over every task

    def read(self, task: int, n_tasks: int) -> Iterator[Document]:
        field = self.cfg.text_field
        for where, record in hf_records(self.cfg, task, n_tasks, self.ledger):
            text = get_field(record, field)
            if not isinstance(text, str):
                self.ledger.skip("missing_text_field", f"{where}: no string field {field!r}")
                continue
            if not text.strip():
                self.ledger.skip("empty", where)
                continue
            self.ledger.read()
            doc_id = record.get(self.cfg.id_field) or where
            yield self.doc(text, str(doc_id), where=where)

    def read_unit(self, unit: Unit) -> Iterator[Document]:
        yield from self.read(0, 1)
