"""Fixtures for reader tests: run a reader the way a build does, and run the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import reader_config, run_cli
from mixcraft.core.ledger import Ledger
from mixcraft.readers import make_reader


def _read_source(cfg: dict, tmp_path: Path, *, n_tasks: int = 1, strict: bool = False, name: str = "src"):
    """All documents of a reader config over `n_tasks` tasks, and the tasks' ledgers, as a
    build runs them (the prepare pass first, then each task with its own ledger)."""
    cfg = reader_config(cfg, tmp_path)
    work = tmp_path / "work" / name
    make_reader(name, cfg, Ledger(name, strict=strict), work_dir=work).prepare(work, n_tasks)
    docs, ledgers = [], []
    for task in range(n_tasks):
        ledger = Ledger(name, strict=strict)
        reader = make_reader(name, cfg, ledger, work_dir=work)
        reader.task_units(task, n_tasks)
        docs += list(reader.read(task, n_tasks))
        ledgers.append(ledger)
    return docs, ledgers


@pytest.fixture
def read_source(tmp_path):
    return lambda cfg, **kw: _read_source(cfg, tmp_path, **kw)


@pytest.fixture
def cli():
    return run_cli
