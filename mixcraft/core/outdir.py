"""Small helpers that keep a build folder consistent when the build is killed at any point."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from mixcraft.errors import UserError


def write_atomic(path: Path, text: str) -> None:
    """Write-then-rename: a build killed mid-write leaves the old file or the new, never half."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def lock_folder(out: Path, work_dir: str, what: str = "build") -> IO:
    """Hold `out` for this build (or synth run, `what`): a second one into the same folder fails
    at once instead of racing this one. The lock is an flock, so it ends with the process, even
    one killed with SIGKILL, and with its forked workers, which die with it
    (mixcraft/build/executors.py)."""
    import fcntl

    path = out / work_dir / "lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise UserError(f"{out}: another {what} is writing this folder right now; wait for it to end, or "
                        "stop it and re-run the same command to resume") from None
    return f
