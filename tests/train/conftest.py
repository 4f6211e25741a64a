"""The session-wide fixture mixture for the trainer tests (helpers live in train_fixtures.py, a
unique module name: several conftest.py files in one run cannot be imported by name)."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_fixtures import write_mixture


@pytest.fixture(scope="session")
def mixture(tmp_path_factory) -> Path:
    """Two streams (books 60%, code 40%) of 24 rows x 256 tokens, vocab 512."""
    return write_mixture(tmp_path_factory.mktemp("mixture") / "out")
