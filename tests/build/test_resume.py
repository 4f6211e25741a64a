"""Determinism and resume: the same recipe gives the same bytes whatever the worker count, and
a build killed with SIGKILL partway and re-run ends with the bytes of one never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from buildhelp import cli_env, output_hashes

from mixcraft.build.load import load_recipe
from mixcraft.build.plan import plan_tasks
from mixcraft.build.run import BuildOptions, build
from mixcraft.core.outdir import WORK_DIR, lock_folder
from mixcraft.errors import UserError


def test_same_bytes_with_one_worker(reference, recipe_path, tmp_path):
    _, want = reference
    out = tmp_path / "w1"
    build(load_recipe(recipe_path), out, BuildOptions(workers=1, show_progress=False))
    assert output_hashes(out) == want


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(c) for c in (task / "children").read_text().split()]
    return kids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.mark.skipif(not Path(f"/proc/self/task/{os.getpid()}/children").exists(),
                    reason="needs Linux /proc/<pid>/task/<tid>/children to find the workers")
def test_sigkill_midway_then_rerun_gives_identical_shards(reference, recipe_path, tmp_path):
    _, want = reference
    n_tasks = len(plan_tasks(load_recipe(recipe_path)))
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "mixcraft", "build", str(recipe_path), "--out", str(out), "--workers", "2"]
    proc = subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done_dir = out / WORK_DIR / "datatrove" / "completions"
    deadline = time.monotonic() + 120
    while not (done_dir.is_dir() and any(done_dir.iterdir())):
        assert proc.poll() is None, f"build ended before any task finished: {proc.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "no task finished within 120 s"
        time.sleep(0.02)
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(done_dir.iterdir()))
    assert 0 < done < n_tasks, f"killed after {done}/{n_tasks} tasks: nothing left to resume"
    assert workers, "the build had no worker processes to orphan"
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), "workers outlived the killed build"
    assert not (out / "manifest.json").exists()

    rerun = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert output_hashes(out) == want


def test_rerun_after_death_during_merge_gives_identical_shards(reference, recipe_path, tmp_path):
    """Killed after some merged index.json files were written but before the manifest: the
    re-run must replace them (streaming's merge_index refuses to overwrite) and match."""
    import shutil

    src, want = reference
    out = tmp_path / "merge"
    shutil.copytree(src, out)
    (out / "manifest.json").unlink()
    (out / "code" / "1024" / "index.json").write_text("{half-written")
    build(load_recipe(recipe_path), out, BuildOptions(workers=2, show_progress=False))  # every task is done: merge only
    assert output_hashes(out) == want


def test_stale_part_of_a_killed_task_is_replaced(reference, recipe_path, tmp_path):
    import shutil

    src, want = reference
    out = tmp_path / "stale"
    shutil.copytree(src, out)
    (out / "manifest.json").unlink()
    # Task 1 of short_bf "died" midway: its completion marker is gone and its part is garbage.
    rank = [(s.source, s.task) for s in plan_tasks(load_recipe(recipe_path))].index(("short_bf", 1))
    (out / WORK_DIR / "datatrove" / "completions" / f"{rank:05d}").unlink()
    (out / WORK_DIR / "tasks" / "short_bf" / "00001.json").unlink()
    part = out / "short_bf" / "4096" / "00001"
    for f in part.iterdir():
        f.write_bytes(b"garbage")
    (part / "shard.00007.mds.zstd").write_bytes(b"from a different run")
    build(load_recipe(recipe_path), out, BuildOptions(workers=1, show_progress=False))
    assert output_hashes(out) == want


def test_a_second_build_into_the_same_folder_is_refused(reference, recipe_path, tmp_path):
    import shutil

    src, _ = reference
    out = tmp_path / "busy"
    shutil.copytree(src, out)
    with lock_folder(out):
        with pytest.raises(UserError, match="another build is writing this folder"):
            build(load_recipe(recipe_path), out, BuildOptions(workers=1, show_progress=False))


def test_missing_task_results_stop_the_merge_with_a_clear_error(reference, recipe_path, tmp_path):
    import shutil

    from mixcraft.build.run import finalize

    src, _ = reference
    out = tmp_path / "partial"
    shutil.copytree(src, out)
    (out / WORK_DIR / "tasks" / "code" / "00002.json").unlink()
    with pytest.raises(UserError, match=r"1 task\(s\) did not finish \(code/00002\).*re-run the same command"):
        finalize(load_recipe(recipe_path), out)


def test_a_failing_task_stops_the_build_with_its_own_message(corpus, tmp_path):
    """A user error inside a forked worker (a bad JSONL line under --strict) reaches the CLI as
    itself, not as a worker traceback; the tasks that did finish stay done for the re-run."""
    from buildhelp import write_recipe

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "text": \n')
    recipe = write_recipe(tmp_path / "r.yaml", corpus, sources=[
        {"name": "short", "reader": {"type": "text", "paths": [str(corpus / "short.jsonl")]}, "proportion": 0.5,
         "tasks": 2},
        {"name": "broken", "reader": {"type": "text", "paths": [str(bad)]}, "proportion": 0.5}])
    # Either task may fail first (short.jsonl holds an empty record too); each says where and why.
    with pytest.raises(UserError, match=r"\.jsonl:\d+: .*\(run without --strict to skip and count it\)"):
        build(load_recipe(recipe), tmp_path / "out", BuildOptions(workers=2, strict=True, show_progress=False))
    assert not (tmp_path / "out" / "manifest.json").exists()
