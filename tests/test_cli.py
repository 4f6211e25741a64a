"""The command line as a user meets it: help, version, and a user mistake as one line, exit 2."""

from __future__ import annotations

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
