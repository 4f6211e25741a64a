"""Fixtures for reader tests: run a reader the way a build does, and run the CLI."""

from __future__ import annotations

import pytest
from readerhelp import read_source as _read_source

from helpers import run_cli


@pytest.fixture
def read_source(tmp_path):
    return lambda cfg, **kw: _read_source(cfg, tmp_path, **kw)


@pytest.fixture
def cli():
    return run_cli
