"""The command line as a user meets it: help, version, and a user mistake as one line, exit 2."""

from __future__ import annotations

import pytest

from helpers import run_cli, spawn_cli
from mixcraft import __version__

BAD = """\
name: t
seq_len: 1024
sources:
  - name: a
    reader: {type: text, paths: [data]}
    propotion: 1.0
"""


def test_help_and_version():
    assert "Usage" in run_cli("-h").stdout
    for cmd in ("build", "stats", "verify", "inspect", "train"):
        help_text = run_cli(cmd, "--help").stdout
        assert "Example: mixcraft " in help_text, cmd
    assert run_cli("--version").stdout.strip() == f"mixcraft {__version__}"


def test_a_user_mistake_is_one_line_exit_2_no_traceback(tmp_path):
    """In a real process: the exit code and stderr a shell sees."""
    (tmp_path / "r.yaml").write_text(BAD)
    proc = spawn_cli("build", tmp_path / "r.yaml", "--dry-run")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [f"error: {tmp_path / 'r.yaml'}: sources[a].propotion: unknown key "
                                        "'propotion' (did you mean 'proportion'?)"]


def test_set_overrides_a_recipe_value_through_the_same_checks(tmp_path):
    (tmp_path / "r.yaml").write_text(BAD.replace("propotion", "proportion"))
    assert "seq_len 2,048" in run_cli("build", tmp_path / "r.yaml", "--dry-run", "--set", "seq_len=2048").stdout
    res = run_cli("build", tmp_path / "r.yaml", "--dry-run", "--set", "seq_len=-1")
    assert res.returncode == 2 and "r.yaml: seq_len: must be >= 1, got -1" in res.stderr


def test_a_finished_command_exits_without_teardown_and_loses_no_output(tmp_path):
    """`python -m mixcraft` ends a successful build with `os._exit`: the summary a pipe reads
    is complete and the output is whole."""
    data = tmp_path / "a.jsonl"
    data.write_text("".join(f'{{"text": "document {i} {"word " * 200}"}}\n' for i in range(50)))
    (tmp_path / "r.yaml").write_text(BAD.replace("propotion", "proportion").replace("paths: [data]",
                                                                                    f"paths: [{data}]"))
    proc = spawn_cli("build", tmp_path / "r.yaml", "--out", tmp_path / "out", "--workers", "2", check=True)
    assert proc.stdout.rstrip().endswith("1 subsets)")
    assert (tmp_path / "out" / "manifest.json").is_file()


class FastExit(Exception):
    pass


def test_the_fast_exit_waits_for_what_is_still_running(monkeypatch):
    """After success, and only with no live child process, non-daemon thread, torch or streaming.
    The process state is stood in for: earlier tests in this process may have left threads."""
    import multiprocessing
    import sys
    import threading

    from mixcraft import cli

    def fake_exit(code):
        raise FastExit(code)

    for name in ("torch", "streaming", "ray", "multiprocess"):  # as a fresh `mixcraft build` has them
        monkeypatch.delitem(sys.modules, name, raising=False)
    threads = [threading.main_thread()]
    monkeypatch.setattr(cli.threading, "enumerate", lambda: list(threads))
    monkeypatch.setattr(multiprocessing, "active_children", lambda: [])
    monkeypatch.setattr(cli.os, "_exit", fake_exit)
    monkeypatch.setattr(cli, "main", lambda: None)
    with pytest.raises(FastExit):
        cli.entry()

    threads.append(threading.Thread(target=lambda: None))  # not a daemon
    cli.entry()  # returns: the interpreter's own exit waits for the thread
    threads.pop()

    monkeypatch.setattr(multiprocessing, "active_children", lambda: [object()])
    cli.entry()  # a child process still running
    monkeypatch.setattr(multiprocessing, "active_children", lambda: [])

    monkeypatch.setitem(sys.modules, "streaming", object())  # what `train` and `verify` load
    cli.entry()
    monkeypatch.delitem(sys.modules, "streaming")

    def fails():
        raise SystemExit(2)

    monkeypatch.setattr(cli, "main", fails)
    with pytest.raises(SystemExit):
        cli.entry()
