"""`mixcraft eval` end to end: an exported checkpoint and a build in, the four-key JSON and the
report out; user mistakes are one line and exit 2."""

from __future__ import annotations

import json
import re
import sys

import pytest
import torch
from eval_fixtures import tiny_llama

from helpers import run_cli
from mixcraft.cli import main
from mixcraft.train.hf import export_hf


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory, tiny_tok):
    model = tiny_llama(tiny_tok.vocab_size, seed=2)
    folder = tmp_path_factory.mktemp("ckpt") / "hf"
    export_hf(model.state_dict(), model.args, folder, dtype=torch.float32)
    return folder


def test_eval_writes_the_four_keys_and_a_report(tmp_path, hf_dir, build):
    out, report = tmp_path / "r.json", tmp_path / "report"
    proc = run_cli("eval", str(hf_dir), "--data", str(build), "--tasks", "passkey,niah_multikey",
                   "--lengths", "256,320", "--depths", "0,1", "--samples", "1", "--validation-rows", "1",
                   "--json", str(out), "--report", str(report), check=True)
    result = json.loads(out.read_text())
    assert set(result) == {"validation", "position_loss", "tasks", "meta"}
    assert set(result["validation"]["sources"]) == {"manual", "reference"}
    assert result["validation"]["split"] == "last_rows"
    assert set(result["tasks"]) == {"passkey", "niah_multikey"}
    assert [(c["length"], c["depth"]) for c in result["tasks"]["passkey"]["cells"]] == \
        [(256, 0.0), (256, 1.0), (320, 0.0), (320, 1.0)]
    meta = result["meta"]
    assert meta["lengths"] == [256, 320] and meta["seed"] == 0 and meta["checkpoint"] == str(hf_dir)
    assert meta["tokenizer"]["vocab_size"] == 1000 and meta["time"]["seconds"] > 0
    assert "passkey:" in proc.stdout and "validation (last_rows)" in proc.stdout
    for name in ("position_loss.png", "tasks.png"):
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (report / "report.html").read_text()
    assert "data:image/png;base64," in html and "niah_multikey" in html


def run_main(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["mixcraft", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return exc.value.code, capsys.readouterr().err


def test_without_data_the_haystack_is_noise_and_validation_says_why(tmp_path, monkeypatch, capsys, hf_dir, tiny_tok):
    out = tmp_path / "r.json"
    code, _ = run_main(monkeypatch, capsys, "eval", str(hf_dir), "--tokenizer", str(tiny_tok.json_path),
                       "--tasks", "niah_single", "--lengths", "256", "--depths", "0.5", "--samples", "1",
                       "--json", str(out))
    assert code == 0
    result = json.loads(out.read_text())
    assert result["validation"] == {"split": None, "note": "no --data given: no validation loss", "sources": {}}
    assert result["meta"]["haystack"].startswith("noise")
    assert result["tasks"]["niah_single"]["n"] == 1


@pytest.mark.parametrize("args,message", [
    (["eval", "{tmp}/nowhere"], r"nowhere: not a folder"),
    (["eval", "{hf}", "--data", "{tmp}"], r"no manifest.json here"),
    (["eval", "{hf}", "--tasks", "passkee"], r"tasks: unknown task 'passkee'"),
    (["eval", "{hf}", "--lengths", "8Q"], r"--lengths: '8Q' is not a length"),
    (["eval", "{hf}"], r"no tokenizer.json here; pass --data OUT"),
    (["eval", "{tmp}", "--data", "{build}"], r"no config.json, hf/ export or DCP checkpoint here"),
])
def test_user_mistakes_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys, hf_dir, build, args, message):
    args = [a.format(tmp=tmp_path, hf=hf_dir, build=build) for a in args]
    code, err = run_main(monkeypatch, capsys, *args)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert re.search(message, err), err
