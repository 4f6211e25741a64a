"""Long runs: crash and resume, token budgets, stragglers, endpoint errors, torn journals, the lock."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from synth_helpers import sl_config, write_config

from mixcraft.errors import UserError
from mixcraft.synth.backends import BackendError, Usage
from mixcraft.synth.fake import FakeBackend, fake_reply
from mixcraft.synth.journal import Journal, lock_run_folder
from mixcraft.synth.runner import BudgetReached, RunOptions, run_stage
from mixcraft.synth.self_lengthen import Roles, run_round

QUIET = RunOptions(concurrency=3, progress=False)
REPO = Path(__file__).resolve().parents[2]


def _round(out, backend=None, opts=QUIET, n=8, **task):
    backend = backend or FakeBackend()
    cfg = sl_config(out, run=opts, n_instructions=n, **task)
    asyncio.run(run_round(cfg, Roles(backend, backend, backend)))
    return (cfg.round_dir / "gen_sft.jsonl").read_bytes(), backend.usage.requests


def _stage(tmp_path, name, tasks, work, opts=QUIET):
    with Journal(tmp_path / f"{name}.jsonl") as journal:
        return asyncio.run(run_stage("stage", tasks, work, journal, Usage(), opts))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The output and request count of an uninterrupted run."""
    return _round(tmp_path_factory.mktemp("ref"))


def _journal_lines(round_dir) -> int:
    return sum(len(p.read_text().splitlines()) for p in round_dir.glob("*.jsonl") if "sft" not in p.name)


def test_resume_after_a_crash_loses_nothing_and_matches_an_uninterrupted_run(tmp_path, reference):
    calls = {"n": 0}
    lock = threading.Lock()

    def crashing(messages, prefill, params):
        with lock:
            calls["n"] += 1
            if calls["n"] == 120:  # well into the extension stage
                raise RuntimeError("simulated crash")
        return fake_reply(messages, prefill, params)

    with pytest.raises(RuntimeError, match="simulated crash"):
        _round(tmp_path, FakeBackend(reply=crashing))
    saved = _journal_lines(tmp_path / "round_1")
    assert saved > 8, "the crashed run journaled nothing"
    output, requests = _round(tmp_path)
    assert output == reference[0]
    assert requests < reference[1]  # journaled samples were not generated again


def test_resume_after_sigkill(tmp_path, reference):
    script = textwrap.dedent(f"""
        import asyncio
        from mixcraft.synth.backends import FakeConfig
        from mixcraft.synth.config import SelfLengthenConfig, SelfLengthenTask
        from mixcraft.synth.fake import FakeBackend
        from mixcraft.synth.runner import RunOptions
        from mixcraft.synth.self_lengthen import Roles, run_round
        b = FakeBackend(delay_s=0.01)
        cfg = SelfLengthenConfig(out={str(tmp_path)!r}, backend=FakeConfig(), run=RunOptions(concurrency=3,
                                 progress=False), self_lengthen=SelfLengthenTask(n_instructions=8))
        asyncio.run(run_round(cfg, Roles(b, b, b)))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 60
    while _journal_lines(tmp_path / "round_1") < 20 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert not (tmp_path / "round_1" / "gen_sft.jsonl").exists()
    output, requests = _round(tmp_path)
    assert output == reference[0]
    assert requests < reference[1]


def test_token_budget_stops_and_a_rerun_continues(tmp_path, reference):
    opts = RunOptions(concurrency=3, progress=False, token_budget=20_000)
    with pytest.raises(BudgetReached):
        _round(tmp_path, opts=opts)
    assert _journal_lines(tmp_path / "round_1") > 0
    output, _ = _round(tmp_path)
    assert output == reference[0]


def test_torn_last_line_is_dropped_and_regenerated(tmp_path, reference):
    _round(tmp_path)
    round_dir = tmp_path / "round_1"
    for name in ("extended", "initial", "instructions"):  # forget that the stages finished
        (round_dir / f"{name}.complete.json").unlink()
    path = round_dir / "extended.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # crash mid-write
    journal = Journal(path)
    assert journal.torn_lines == 1 and len(journal.records) == len(lines) - 1
    journal.close()
    assert path.read_text().endswith("\n")
    output, requests = _round(tmp_path)
    assert output == reference[0]


def test_corrupt_middle_line_is_a_user_error(tmp_path):
    path = tmp_path / "stage.jsonl"
    path.write_text('{"key": "a", "status": "ok"}\nnot json\n{"key": "b", "status": "ok"}\n')
    with pytest.raises(UserError, match=r"stage.jsonl:2: corrupt checkpoint line"):
        Journal(path)


def _tasks(n):
    return [(f"k{i:03d}", i) for i in range(n)]


def test_a_straggler_gets_a_backup_copy_and_is_never_lost(tmp_path):
    calls = Counter()

    async def work(key, payload):
        calls[key] += 1
        if key == "k000" and calls[key] == 1:
            await asyncio.sleep(30)  # the first copy hangs; the backup answers at once
        return {"status": "ok", "value": payload}

    opts = RunOptions(concurrency=4, progress=False, straggler_frac=0.9, straggler_wait_s=0.3)
    start = time.monotonic()
    report = _stage(tmp_path, "s", _tasks(20), work, opts)
    assert time.monotonic() - start < 5, "the straggler held the stage"
    assert report.complete and report.ok == 20 and report.backups == 1 and report.backups_won == 1
    records = Journal(tmp_path / "s.jsonl").records
    assert records["k000"]["value"] == 0 and len((tmp_path / "s.jsonl").read_text().splitlines()) == 20


def test_a_slow_task_that_finishes_first_keeps_its_result_and_the_backup_is_cancelled(tmp_path):
    cancelled = []

    async def work(key, payload):
        try:
            await asyncio.sleep(0.6 if key == "k000" else 0.0)  # the original needs 0.6 s, any copy too
            return {"status": "ok"}
        except asyncio.CancelledError:
            cancelled.append(key)
            raise

    opts = RunOptions(concurrency=4, progress=False, straggler_frac=0.5, straggler_wait_s=0.3)
    report = _stage(tmp_path, "t", _tasks(6), work, opts)
    assert report.ok == 6 and report.backups == 1 and report.backups_won == 0
    assert cancelled == ["k000"]  # the backup, once the original finished first


def test_endpoint_errors_are_counted_and_retried(tmp_path):
    failures = {"k003": 2, "k007": 1}
    lock = threading.Lock()

    async def work(key, payload):
        with lock:
            if failures.get(key, 0) > 0:
                failures[key] -= 1
                raise BackendError("connect_error", "http://x: cannot connect")
        return {"status": "ok"}

    report = _stage(tmp_path, "e", _tasks(10), work)
    assert report.ok == 10 and report.complete
    assert report.endpoint_errors == {"connect_error": 3}


def test_a_request_the_server_refuses_is_recorded_as_rejected(tmp_path):
    calls = Counter()

    async def work(key, payload):
        calls[key] += 1
        if key == "k002":
            raise BackendError("http_400", "prompt longer than the context", permanent=True)
        return {"status": "ok"}

    report = _stage(tmp_path, "p", _tasks(5), work)
    assert report.complete and report.ok == 4 and report.rejected == 1
    assert report.reasons == {"http_400": 1} and calls["k002"] == 1  # not retried
    assert Journal(tmp_path / "p.jsonl").records["k002"]["status"] == "rejected"


def test_a_dead_endpoint_aborts_with_a_clear_message_and_keeps_finished_samples(tmp_path):
    async def work(key, payload):
        if payload >= 5:
            raise BackendError("connect_error", "http://127.0.0.1:9/v1/chat/completions: cannot connect")
        return {"status": "ok"}

    opts = RunOptions(concurrency=1, progress=False, max_consecutive_failures=4)
    with pytest.raises(UserError, match=r"4 requests in a row failed \(connect_error\)"):
        _stage(tmp_path, "d", _tasks(10), work, opts)
    assert len(Journal(tmp_path / "d.jsonl").records) == 5


def test_journal_records_are_json_lines(tmp_path):
    with Journal(tmp_path / "j.jsonl") as journal:
        journal.append({"key": "a", "text": "é"})
    assert json.loads((tmp_path / "j.jsonl").read_text()) == {"key": "a", "text": "é"}


def test_resume_refuses_other_settings_but_allows_more_instructions(tmp_path, reference):
    backend = FakeBackend()
    _round(tmp_path, n=4)
    cfg = sl_config(tmp_path, run=QUIET, n_instructions=8, min_growth=1.5)
    with pytest.raises(UserError, match=r"other settings \(self_lengthen: .*min_growth.*new --out"):
        asyncio.run(run_round(cfg, Roles(backend, backend, backend)))
    output, requests = _round(tmp_path, n=8)  # growing the run only adds tasks
    assert output == reference[0]
    assert requests < reference[1]


def test_a_second_run_into_the_same_folder_is_refused_in_one_line(tmp_path):
    held = lock_run_folder(tmp_path)
    try:
        with pytest.raises(UserError, match=r"another synth run is writing this folder right now; wait for it "
                                            r"to end, or stop it and re-run the same command to resume"):
            _round(tmp_path)
    finally:
        held.close()
    assert not (tmp_path / "round_1" / "instructions.jsonl").exists()


def test_two_concurrent_runs_never_double_a_journal(tmp_path):
    """The issue measured 219 journal lines for 72 tasks with two runs racing; now one is refused."""
    config = write_config(tmp_path / "sl.yaml", {"out": "o", "backend": {"type": "fake", "delay_s": 0.01},
                                                 "run": {"concurrency": 3, "progress": False},
                                                 "self_lengthen": {"n_instructions": 8}})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "mixcraft", "synth", "self-lengthen", str(config)]
    first = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "o" / "round_1" / "instructions.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    _, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    assert second.returncode == 2 and "another synth run is writing this folder" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    lines = [json.loads(x)["key"] for x in (tmp_path / "o/round_1/instructions.jsonl").read_text().splitlines()]
    assert len(lines) == len(set(lines)) == 8


def test_ctrl_c_keeps_what_finished_and_a_rerun_matches_an_uninterrupted_run(tmp_path, reference):
    # Interrupted after the first 10 journal lines, with more than half of the run left, so the
    # signal lands mid-run even on a loaded machine.
    config = write_config(tmp_path / "sl.yaml", {"out": "o", "backend": {"type": "fake", "delay_s": 0.02},
                                                 "run": {"concurrency": 3, "progress": False},
                                                 "self_lengthen": {"n_instructions": 8}})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "mixcraft", "synth", "self-lengthen", str(config)]
    # Ctrl-C in a shell: SIGINT at its default in the child. Something earlier in the suite can
    # leave this process ignoring SIGINT, and a child would inherit that and run to the end.
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while _journal_lines(tmp_path / "o/round_1") < 10 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted; every finished sample is saved" in err
    saved = _journal_lines(tmp_path / "o/round_1")
    assert saved >= 10
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert (tmp_path / "o/round_1/gen_sft.jsonl").read_bytes() == reference[0]
