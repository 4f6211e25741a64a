"""Fixtures for curation tests: the real tokenizer and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli():
    def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        return subprocess.run([sys.executable, "-m", "mixcraft", *args], env=env, capture_output=True, text=True,
                              timeout=timeout)
    return run
