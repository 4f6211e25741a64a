"""The layer rule holds: imports only point down (the import-linter contract in pyproject.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_imports_point_down_the_layers():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.fail("lint-imports is missing: pip install import-linter (the dev extra has it)")
    proc = subprocess.run([exe], cwd=REPO, capture_output=True, text=True, env={"PYTHONPATH": str(REPO),
                                                                               "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "1 kept, 0 broken" in proc.stdout
