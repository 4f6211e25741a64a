"""Self-Lengthen with the deterministic fake backend: the 1.2x rule, a full round, determinism."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from typer.testing import CliRunner

from mixcraft.synth import prompts
from mixcraft.synth.backends import SamplingParams
from mixcraft.synth.chatjsonl import check_chat_file
from mixcraft.synth.cli import app
from mixcraft.synth.fake import FakeBackend
from mixcraft.synth.runner import RunOptions
from mixcraft.synth.self_lengthen import Roles, SelfLengthenConfig, extend_response, run_round
from mixcraft.synth.textops import check_response, count_words

QUIET = RunOptions(concurrency=4, progress=False)


def _words(start: int, n: int) -> str:
    return " ".join(f"w{i}" for i in range(start, start + n))


def _scripted_extender(continuation_words: int, calls: list):
    """Enrichment: 3 paragraphs of 10 words; continuation: exactly `continuation_words` words."""

    def reply(messages, prefill, params):
        calls.append(prefill)
        if not prefill:
            return "\n\n".join(_words(1000 + 10 * k, 10) + "." for k in range(3))
        return " " + _words(5000, continuation_words - 1) + " end."

    return FakeBackend(reply=reply)


@pytest.mark.parametrize(
    ("continuation_words", "accepted"), [(100, False), (101, True), (60, False), (150, True)]
)
def test_extension_is_accepted_only_above_1_2x(continuation_words, accepted):
    original = "\n\n".join(_words(10 * k, 10) + "." for k in range(10))  # 100 words
    calls: list[str] = []
    result, reasons = extend_response(
        "Write about w.",
        original,
        _scripted_extender(continuation_words, calls),
        passes=3,
        min_growth=1.2,
        params=SamplingParams(),
    )
    # Prefill = 2/3 of the 3 enriched paragraphs = 20 words; the result is 20 + continuation words:
    # 120 words is exactly 1.2x and is rejected, 121 is accepted.
    prefills = [p for p in calls if p]
    assert prefills and all(count_words(p) == 20 and p.count("\n\n") == 1 for p in prefills)
    if accepted:
        assert result is not None and count_words(result) == 20 + continuation_words
        assert result.startswith(prefills[0]) and check_response(result) is None
    else:
        assert result is None and reasons["growth_below_min"] == 1


def test_extension_passes_keep_only_longer_filtered_candidates():
    original = "\n\n".join(_words(10 * k, 10) + "." for k in range(10))

    def reply(messages, prefill, params):
        if not prefill:
            return "\n\n".join(_words(2000, 10) + "." for _ in range(3))
        return " and then it stops mid"  # no final punctuation: every pass is rejected

    result, reasons = extend_response(
        "x", original, FakeBackend(reply=reply), passes=3, min_growth=1.2, params=SamplingParams()
    )
    assert result is None
    assert reasons == Counter({"no_final_punctuation": 3, "growth_below_min": 1})


def _run(tmp_path, name="run", opts=QUIET, backend=None, **kw):
    cfg = SelfLengthenConfig(out_dir=tmp_path / name, n_instructions=kw.pop("n", 12), **kw)
    backend = backend or FakeBackend()
    return cfg, run_round(cfg, Roles(backend, backend, backend), opts), backend


def test_full_round_writes_valid_chat_jsonl(tmp_path):
    cfg, summary, backend = _run(tmp_path)
    gen, ext = cfg.round_dir / "gen_sft.jsonl", cfg.round_dir / "ext_sft.jsonl"
    assert check_chat_file(gen) == [] and check_chat_file(ext) == []
    rows = [json.loads(line) for line in gen.read_text().splitlines()]
    assert rows, "the fake run produced no samples"
    assert summary["samples"] == len(rows) == len(ext.read_text().splitlines())
    for row in rows:
        user, assistant = row["messages"]
        assert user["role"] == "user" and assistant["role"] == "assistant"
        assert row["meta"]["n_words"] > 1.2 * row["meta"]["n_words_initial"]
        assert row["meta"]["n_words"] == count_words(assistant["content"])
        assert check_response(assistant["content"]) is None
        assert "loss_on_input" not in row
    ext_row = json.loads(ext.read_text().splitlines()[0])
    assert ext_row["messages"][0]["content"].startswith(prompts.EXTEND.split("{", 1)[0])
    # The filters and the judge had work to do, and their reasons were counted.
    stages = {s["name"].split()[-1]: s for s in summary["stages"]}
    assert stages["instructions"]["reasons"].get("judged_unsuitable", 0) > 0
    assert sum(stages["initial"]["reasons"].values()) > 0
    assert summary["usage"]["requests"] == backend.usage.requests > 0
    assert summary["mean_words"]["extended_kept"] > summary["mean_words"]["initial_kept"]


def test_same_seed_same_output_regardless_of_concurrency(tmp_path):
    a, _, _ = _run(tmp_path, "a", opts=RunOptions(concurrency=1, progress=False))
    b, _, _ = _run(tmp_path, "b", opts=RunOptions(concurrency=6, progress=False))
    c, _, _ = _run(tmp_path, "c", seed=1)
    out = lambda cfg: (cfg.round_dir / "gen_sft.jsonl").read_bytes()  # noqa: E731
    assert out(a) == out(b)
    assert out(a) != out(c)


def test_round_two_grows_the_instruction_pool(tmp_path):
    cfg1, _, _ = _run(tmp_path, "r", n=4)
    cfg2, summary, _ = _run(tmp_path, "r", n=4, round=2)
    assert cfg2.round_dir.name == "round_2" and (cfg2.round_dir / "gen_sft.jsonl").exists()
    assert summary["round"] == 2
    keys = [
        json.loads(line)["key"] for line in (cfg2.round_dir / "instructions.jsonl").read_text().splitlines()
    ]
    assert all(k.startswith("r2-") for k in keys)


def test_seeds_used_as_is_with_zero_instructions(tmp_path):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("Write a long essay about rivers.\nWrite a long story about a fox.\n")
    cfg, summary, _ = _run(tmp_path, n=0, seeds_path=seeds)
    records = [json.loads(line) for line in (cfg.round_dir / "instructions.jsonl").read_text().splitlines()]
    assert [r["instruction"] for r in records] == seeds.read_text().splitlines()


def test_cli_fake_backend_and_user_errors(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(
        app,
        [
            "self-lengthen",
            "--backend",
            "fake",
            "--out",
            str(tmp_path / "o"),
            "--n-instructions",
            "4",
            "--no-progress",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert "round_1/gen_sft.jsonl" in ok.output and "--round 2" in ok.output
    bad = runner.invoke(app, ["self-lengthen", "--backend", "nope", "--out", str(tmp_path / "o2")])
    assert bad.exit_code == 2 and "unknown backend" in bad.output
    missing = runner.invoke(
        app, ["self-lengthen", "--backend", "fake", "--out", str(tmp_path / "o3"), "--seeds", "nowhere.jsonl"]
    )
    assert missing.exit_code == 2 and "--seeds nowhere.jsonl: no such file" in missing.output
    bad_seed = tmp_path / "s.jsonl"
    bad_seed.write_text('{"instruction": "a"}\n{"text": 1}\n')
    bad_line = runner.invoke(
        app, ["self-lengthen", "--backend", "fake", "--out", str(tmp_path / "o4"), "--seeds", str(bad_seed)]
    )
    assert bad_line.exit_code == 2 and "s.jsonl:2:" in bad_line.output


def test_cli_token_budget_exits_3_and_a_rerun_finishes(tmp_path):
    runner = CliRunner()
    args = [
        "self-lengthen",
        "--backend",
        "fake",
        "--out",
        str(tmp_path),
        "--n-instructions",
        "4",
        "--no-progress",
    ]
    stopped = runner.invoke(app, [*args, "--token-budget", "3000"])
    assert stopped.exit_code == 3 and "rerun the same command to continue" in stopped.output
    assert not (tmp_path / "round_1" / "gen_sft.jsonl").exists()
    finished = runner.invoke(app, args)
    assert finished.exit_code == 0, finished.output
    assert check_chat_file(tmp_path / "round_1" / "gen_sft.jsonl") == []
