"""Fixtures for curation tests: the real tokenizer and the CLI."""

from __future__ import annotations

import pytest

from helpers import run_cli


@pytest.fixture
def cli():
    return run_cli
