"""Hugging Face hub (or local) datasets through `datasets`, streamed, split across tasks.

`dataset` is a hub id (`HuggingFaceFW/fineweb-edu`) or a builder name with `data_files`
(`parquet`, `json`). Nothing is downloaded before the build runs: `--dry-run` never touches
the network.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from datatrove.data import Document

from mixcraft.errors import UserError
from mixcraft.readers.base import Reader, Unit, get_field

HF_PARAMS = {"dataset": str, "config": str, "split": str, "data_files": (str, list, dict), "revision": str,
             "streaming": bool, "text_field": str, "id_field": str, "where": dict}


def hf_records(cfg: dict[str, Any], task: int, n_tasks: int, ledger) -> Iterator[tuple[str, dict]]:
    """(where, record) for this task's share of the dataset."""
    import datasets
    from datasets.distributed import split_dataset_by_node

    name = cfg["dataset"]
    try:
        ds = datasets.load_dataset(name, cfg.get("config"), split=cfg.get("split", "train"),
                                   data_files=cfg.get("data_files"), revision=cfg.get("revision"),
                                   streaming=cfg.get("streaming", True))
    except Exception as exc:  # datasets raises many types (ConnectionError, FileNotFoundError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"dataset {name!r}: cannot be loaded ({first}); check the id and your network, "
                        "or download it and point `data_files` at the local files") from None
    ds = split_dataset_by_node(ds, rank=task, world_size=n_tasks)
    where_filter = cfg.get("where", {})
    for i, record in enumerate(ds):
        if where_filter and not all(get_field(record, k) == v for k, v in where_filter.items()):
            ledger.note("not_selected")
            continue
        yield f"{name}[{task}/{n_tasks}]#{i}", record


class HFReader(Reader):
    params = HF_PARAMS
    required = ("dataset",)

    def list_units(self) -> list[Unit]:
        return [Unit(key=self.cfg["dataset"], path=self.cfg["dataset"], size_bytes=0)]

    def active_tasks(self, n_tasks: int) -> int:
        return n_tasks  # `datasets` splits a streamed dataset over every task

    def read(self, task: int, n_tasks: int) -> Iterator[Document]:
        field = self.cfg.get("text_field", "text")
        for where, record in hf_records(self.cfg, task, n_tasks, self.ledger):
            text = get_field(record, field)
            if not isinstance(text, str):
                self.ledger.skip("missing_text_field", f"{where}: no string field {field!r}")
                continue
            if not text.strip():
                self.ledger.skip("empty", where)
                continue
            self.ledger.read()
            doc_id = record.get(self.cfg.get("id_field", "id")) or where
            yield self.doc(text, str(doc_id), where=where)

    def read_unit(self, unit: Unit) -> Iterator[Document]:
        yield from self.read(0, 1)
