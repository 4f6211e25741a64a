"""A full disk is one line naming the folder and the free space, and the same command resumes
once there is room, ending with the bytes of a build that never ran out."""

from __future__ import annotations

import errno
import subprocess
import uuid
from pathlib import Path

import pytest
from buildhelp import output_hashes

from helpers import TINY_RECIPE, make_corpus, run_cli


@pytest.fixture
def small_disk():
    """A 120 KiB tmpfs (root and mount permission needed; else the test is skipped)."""
    mnt = Path("/tmp") / f"mixcraft-small-{uuid.uuid4().hex[:8]}"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=120k", "tmpfs", str(mnt)], capture_output=True).returncode:
        mnt.rmdir()
        pytest.skip("cannot mount a small tmpfs here (needs root); the simulated test covers the same path")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
        mnt.rmdir()


def test_a_full_disk_then_room_resumes_to_the_same_bytes(tmp_path, small_disk):
    make_corpus(tmp_path)
    (tmp_path / "tiny.yaml").write_text(TINY_RECIPE)
    ref = tmp_path / "ref"
    run_cli("build", tmp_path / "tiny.yaml", "--out", ref, check=True)
    out = small_disk / "out"
    res = run_cli("build", tmp_path / "tiny.yaml", "--out", out)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    (line,) = [ln for ln in res.stderr.splitlines() if not ln.startswith("[")]  # the stage lines are dated
    assert line.startswith(f"error: {out}") and "no space left on device (0.0 MiB free of 0.1 MiB); free " \
        "space, then re-run the same command to resume" in line, res.stderr
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True)
    run_cli("build", tmp_path / "tiny.yaml", "--out", out, check=True)
    assert output_hashes(out) == output_hashes(ref)


def test_enospc_anywhere_in_a_task_is_one_line(tmp_path, monkeypatch):
    """Simulated: a shard write raising ENOSPC inside a forked task reaches the CLI as one line."""
    import mixcraft.core.mdsfile as mdsfile

    make_corpus(tmp_path)
    (tmp_path / "tiny.yaml").write_text(TINY_RECIPE)

    def full(self, data):  # Path.write_bytes on a full disk
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(mdsfile.Path, "write_bytes", full)
    res = run_cli("build", tmp_path / "tiny.yaml", "--out", tmp_path / "out")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    (line,) = [ln for ln in res.stderr.splitlines() if not ln.startswith("[")]  # the stage lines are dated
    assert "shard.00000.mds.zstd: no space left on device (" in line
