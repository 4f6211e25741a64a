"""Long runs: crash and resume, token budgets, stragglers, endpoint errors, torn journals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter

import pytest

from mixcraft.errors import UserError
from mixcraft.synth.backends import BackendError, Usage
from mixcraft.synth.fake import FakeBackend, fake_reply
from mixcraft.synth.journal import Journal
from mixcraft.synth.runner import BudgetReached, RunOptions, run_stage
from mixcraft.synth.self_lengthen import Roles, SelfLengthenConfig, run_round

QUIET = RunOptions(concurrency=3, progress=False)


def _round(out, backend=None, opts=QUIET, n=8):
    backend = backend or FakeBackend()
    cfg = SelfLengthenConfig(out_dir=out, n_instructions=n)
    run_round(cfg, Roles(backend, backend, backend), opts)
    return (cfg.round_dir / "gen_sft.jsonl").read_bytes(), backend.usage.requests


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
        from pathlib import Path
        from mixcraft.synth.fake import FakeBackend
        from mixcraft.synth.runner import RunOptions
        from mixcraft.synth.self_lengthen import Roles, SelfLengthenConfig, run_round
        b = FakeBackend(delay_s=0.01)
        run_round(SelfLengthenConfig(out_dir=Path({str(tmp_path)!r}), n_instructions=8), Roles(b, b, b),
                  RunOptions(concurrency=3, progress=False))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
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


def test_stragglers_are_cut_after_the_grace_period(tmp_path):
    release = threading.Event()

    def work(key, payload):
        if payload == 0:
            release.wait(10)  # one very slow generation
        return {"status": "ok", "value": payload}

    opts = RunOptions(concurrency=4, progress=False, straggler_frac=0.9, straggler_wait_s=0.3)
    with Journal(tmp_path / "s.jsonl") as journal:
        start = time.monotonic()
        report = run_stage("stage", _tasks(20), work, journal, Usage(), opts)
        elapsed = time.monotonic() - start
    release.set()
    assert report.straggler_cut == 1 and report.ok == 19 and report.complete
    assert elapsed < 5
    assert "k000" not in Journal(tmp_path / "s.jsonl").records


def test_endpoint_errors_are_counted_and_retried(tmp_path):
    failures = {"k003": 2, "k007": 1}
    lock = threading.Lock()

    def work(key, payload):
        with lock:
            if failures.get(key, 0) > 0:
                failures[key] -= 1
                raise BackendError("connect_error", "http://x: cannot connect")
        return {"status": "ok"}

    with Journal(tmp_path / "e.jsonl") as journal:
        report = run_stage("stage", _tasks(10), work, journal, Usage(), QUIET)
    assert report.ok == 10 and report.complete
    assert report.endpoint_errors == {"connect_error": 3}


def test_a_request_the_server_refuses_is_recorded_as_rejected(tmp_path):
    calls = Counter()

    def work(key, payload):
        calls[key] += 1
        if key == "k002":
            raise BackendError("http_400", "prompt longer than the context", permanent=True)
        return {"status": "ok"}

    with Journal(tmp_path / "p.jsonl") as journal:
        report = run_stage("stage", _tasks(5), work, journal, Usage(), QUIET)
    assert report.complete and report.ok == 4 and report.rejected == 1
    assert report.reasons == {"http_400": 1} and calls["k002"] == 1  # not retried
    assert Journal(tmp_path / "p.jsonl").records["k002"]["status"] == "rejected"


def test_a_dead_endpoint_aborts_with_a_clear_message_and_keeps_finished_samples(tmp_path):
    def work(key, payload):
        if payload >= 5:
            raise BackendError("connect_error", "http://127.0.0.1:9/v1/chat/completions: cannot connect")
        return {"status": "ok"}

    opts = RunOptions(concurrency=1, progress=False, max_consecutive_failures=4)
    with (
        Journal(tmp_path / "d.jsonl") as journal,
        pytest.raises(UserError, match=r"4 requests in a row failed \(connect_error\)"),
    ):
        run_stage("stage", _tasks(10), work, journal, Usage(), opts)
    assert len(Journal(tmp_path / "d.jsonl").records) == 5


def test_journal_records_are_json_lines(tmp_path):
    with Journal(tmp_path / "j.jsonl") as journal:
        journal.append({"key": "a", "text": "é"})
    assert json.loads((tmp_path / "j.jsonl").read_text()) == {"key": "a", "text": "é"}


def test_resume_refuses_other_settings_but_allows_more_instructions(tmp_path, reference):
    backend = FakeBackend()
    cfg = SelfLengthenConfig(out_dir=tmp_path, n_instructions=8, min_growth=1.5)
    _round(tmp_path, n=4)
    with pytest.raises(UserError, match=r"other settings \(min_growth: 1\.2 -> 1\.5\).*new --out"):
        run_round(cfg, Roles(backend, backend, backend), QUIET)
    output, requests = _round(tmp_path, n=8)  # growing the run only adds tasks
    assert output == reference[0]
    assert requests < reference[1]
