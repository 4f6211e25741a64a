"""Self-Lengthen with the deterministic fake backend: the 1.2x rule, a full round, determinism,
the round and pool semantics, the config file and its CLI."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from synth_helpers import sl_config, write_config
from typer.testing import CliRunner

from mixcraft.synth import prompts
from mixcraft.synth.backends import SamplingParams
from mixcraft.synth.chatjsonl import check_chat_file
from mixcraft.synth.cli import app
from mixcraft.synth.extender import extend_response
from mixcraft.synth.fake import FakeBackend, fake_reply
from mixcraft.synth.runner import RunOptions
from mixcraft.synth.self_lengthen import Roles, _answer_work, _expand_work, run_round
from mixcraft.synth.textops import check_response, count_words

REPO = Path(__file__).resolve().parents[2]


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


def _extend(original: str, backend, **kw):
    return asyncio.run(extend_response("Write about w.", original, backend, passes=3, min_growth=1.2,
                                       params=SamplingParams(), **kw))


@pytest.mark.parametrize(("continuation_words", "accepted"), [(100, False), (101, True), (60, False), (150, True)])
def test_extension_is_accepted_only_above_1_2x(continuation_words, accepted):
    original = "\n\n".join(_words(10 * k, 10) + "." for k in range(10))  # 100 words
    calls: list[str] = []
    result, reasons = _extend(original, _scripted_extender(continuation_words, calls))
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

    result, reasons = _extend(original, FakeBackend(reply=reply))
    assert result is None
    assert reasons == Counter({"no_final_punctuation": 3, "growth_below_min": 1})


def test_an_extension_that_talks_about_itself_is_rejected_by_the_stop_words():
    original = "\n\n".join(_words(10 * k, 10) + "." for k in range(10))

    def reply(messages, prefill, params):
        if not prefill:
            return "\n\n".join(_words(2000 + 10 * k, 10) + "." for k in range(3))
        return " " + _words(7000, 100) + ".\n\nThis revised version adds detail."  # last 3 lines

    result, reasons = _extend(original, FakeBackend(reply=reply))
    assert result is None and reasons["stop_word"] == 3


def _run(tmp_path, name="run", backend=None, **kw):
    cfg = sl_config(tmp_path / name, **kw)
    backend = backend or FakeBackend()
    return cfg, asyncio.run(run_round(cfg, Roles(backend, backend, backend))), backend


def test_full_round_writes_valid_chat_jsonl(tmp_path):
    cfg, summary, backend = _run(tmp_path, n_instructions=16)
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
    assert {"no_final_punctuation", "stop_word"} <= set(stages["initial"]["reasons"])
    assert summary["usage"]["requests"] == backend.usage.requests > 0
    assert summary["mean_words"]["extended_kept"] > summary["mean_words"]["initial_kept"]


def test_requests_carry_the_reference_decoding_and_stop_strings():
    seen = []

    def reply(messages, prefill, params):
        seen.append((prefill, params))
        return fake_reply(messages, prefill, params)

    backend = FakeBackend(reply=reply)
    cfg = sl_config(Path("/nonexistent"), n_instructions=1)
    pool = ["Write a long essay about rivers.", "Write a long story about a fox."]
    asyncio.run(_expand_work(cfg, Roles(backend, backend, backend))("r1-i0", {"pool": pool}))
    asyncio.run(_answer_work(cfg, Roles(backend, backend, backend))("a", {"key": "k", "instruction": "Write."}))
    expand = [p for pre, p in seen if pre.startswith("Instruction 1:")][0]
    answer = seen[-1][1]
    assert answer.max_tokens == 16384 and (answer.temperature, answer.top_p, answer.top_k) == (0.7, 0.8, 20)
    assert {"<|eot_id|>", "\n\n---", "\n\n\n", "\n---", "---", "<|im_end|>"} == set(answer.stop)
    assert expand.stop[-1] == "\nInstruction 4" and expand.max_tokens == 1024


def test_same_seed_same_output_regardless_of_concurrency(tmp_path):
    a, _, _ = _run(tmp_path, "a", run=RunOptions(concurrency=1, progress=False))
    b, _, _ = _run(tmp_path, "b", run=RunOptions(concurrency=6, progress=False))
    c, _, _ = _run(tmp_path, "c", seed=1)
    out = lambda cfg: (cfg.round_dir / "gen_sft.jsonl").read_bytes()  # noqa: E731
    assert out(a) == out(b)
    assert out(a) != out(c)


def _examples(prefill: str) -> list[str]:
    return [line.split(": ", 1)[1] for line in prefill.splitlines() if line.split(": ", 1)[1:]]


def test_few_shot_pool_is_the_seeds_every_round_and_never_carries_over(tmp_path):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("Write a long essay about rivers.\nWrite a long story about a fox.\nWrite a long guide to bread.\n")
    prefills: list[str] = []

    def reply(messages, prefill, params):
        if prefill.startswith("Instruction 1:"):
            prefills.append(prefill)
        return fake_reply(messages, prefill, params)

    backend = FakeBackend(reply=reply)
    _run(tmp_path, "r", backend, n_instructions=6, seeds=str(seeds))
    round1 = {json.loads(x)["instruction"] for x in (tmp_path / "r/round_1/instructions.jsonl").read_text().splitlines()}
    prefills.clear()
    _, summary, _ = _run(tmp_path, "r", backend, n_instructions=6, seeds=str(seeds), round=2)
    assert summary["round"] == 2 and prefills
    used = {e for p in prefills for e in _examples(p)}
    assert used <= set(seeds.read_text().splitlines()), "only seeds are few-shot examples"
    assert not used & round1, "round 1's instructions joined round 2's pool"


def test_growing_pool_draws_on_earlier_waves_of_the_same_round(tmp_path):
    prefills: list[str] = []

    def reply(messages, prefill, params):
        if prefill.startswith("Instruction 1:"):
            prefills.append(prefill)
        return fake_reply(messages, prefill, params)

    cfg, summary, _ = _run(tmp_path, "g", FakeBackend(reply=reply), n_instructions=40, pool="grow", pool_wave=8)
    stage = summary["stages"][0]
    assert stage["name"] == "round 1 instructions" and stage["total"] == 40
    accepted = {json.loads(x)["instruction"] for p in cfg.round_dir.glob("instructions.w*.jsonl")
                for x in p.read_text().splitlines()}
    used = {e for p in prefills for e in _examples(p)}
    assert used & accepted, "no wave drew on an accepted instruction"
    again, _, _ = _run(tmp_path, "g2", n_instructions=40, pool="grow", pool_wave=8,
                       run=RunOptions(concurrency=1, progress=False))
    assert (again.round_dir / "gen_sft.jsonl").read_bytes() == (cfg.round_dir / "gen_sft.jsonl").read_bytes()


def test_seeds_used_as_is_with_zero_instructions(tmp_path):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("Write a long essay about rivers.\nWrite a long story about a fox.\n")
    cfg, summary, _ = _run(tmp_path, n_instructions=0, seeds=str(seeds))
    records = [json.loads(line) for line in (cfg.round_dir / "instructions.jsonl").read_text().splitlines()]
    assert [r["instruction"] for r in records] == seeds.read_text().splitlines()


def test_every_shipped_synth_config_loads_and_spells_out_the_defaults():
    from mixcraft.schema import to_data
    from mixcraft.synth.config import LongQAConfig, SelfLengthenConfig, load_config

    sl = load_config(SelfLengthenConfig, REPO / "recipes/synth/self-lengthen.yaml")
    assert sl == SelfLengthenConfig(out=sl.out, self_lengthen=type(sl.task)(seeds=sl.task.seeds))
    assert sl.out == str(REPO / "out/self-lengthen") and Path(sl.task.seeds).is_file()
    qa = load_config(LongQAConfig, REPO / "recipes/synth/long-qa.yaml")
    assert qa.task.loss_on_input and qa.sampling.max_tokens == 512
    assert to_data(qa)["backend"]["type"] == "openai"
    smoke = load_config(SelfLengthenConfig, REPO / "recipes/synth/fake-smoke.yaml")
    assert smoke.backend.type_name == "fake"


def test_role_models_of_a_local_backend_are_folders_relative_to_the_config(tmp_path):
    from mixcraft.synth.config import SelfLengthenConfig, load_config

    config = write_config(tmp_path / "sl.yaml", {
        "out": "o", "backend": {"type": "transformers", "model": "base"},
        "self_lengthen": {"generator_model": "ckpt/gen-r1", "extender_model": "/abs/ext-r1"}})
    cfg = load_config(SelfLengthenConfig, config)
    assert cfg.backend.model == str(tmp_path / "base")
    assert cfg.task.generator_model == str(tmp_path / "ckpt/gen-r1") and cfg.task.extender_model == "/abs/ext-r1"
    served = load_config(SelfLengthenConfig, config, ["backend={type: openai}"])
    assert served.task.generator_model == "ckpt/gen-r1"  # a server's model names are names


def _cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_runs_a_config_and_flags_only_override_it(tmp_path):
    config = write_config(tmp_path / "sl.yaml", {"out": "from-config", "backend": {"type": "fake"},
                                                 "run": {"concurrency": 4, "progress": False},
                                                 "self_lengthen": {"n_instructions": 4}})
    ok = _cli("self-lengthen", config, "--set", "self_lengthen.n_instructions=5")
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "from-config/round_1/gen_sft.jsonl").exists()  # relative to the config file
    assert len((tmp_path / "from-config/round_1/instructions.jsonl").read_text().splitlines()) == 5
    assert "recipes/self-lengthen-extender.yaml" in ok.output and "--round 2" in ok.output
    out = tmp_path / "cwd-out"
    flagged = _cli("self-lengthen", config, "--out", out, "--round", 2)
    assert flagged.exit_code == 0, flagged.output
    assert (out / "round_2/gen_sft.jsonl").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "backend.type=vllm"], r"sl\.yaml: backend\.type: unknown backend type 'vllm' \(known: fake, openai, "
                                     r"transformers\)"),
    (["--set", "self_lengthen.seeds=nowhere.jsonl"], r"self_lengthen\.seeds .*nowhere\.jsonl: no such file"),
    (["--set", "self_lengthen.min_growth=1.0"], r"self_lengthen\.min_growth: must be > 1, got 1"),
    (["--set", "run.concurency=3"], r"run\.concurency: unknown key 'concurency' \(did you mean 'concurrency'\?\)"),
    (["--endpoint", "http://x"], r"backend\.endpoint: unknown key 'endpoint'"),
    (["--set", "self_lengthen.generator_model=gen"], r"backend fake has no models"),
])
def test_cli_config_mistakes_are_one_line(tmp_path, args, message):
    config = write_config(tmp_path / "sl.yaml", {"out": "o", "backend": {"type": "fake"}})
    result = _cli("self-lengthen", config, *args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1
    assert re.search(message, result.output), result.output


def test_cli_bad_seed_line_names_the_file_and_line(tmp_path):
    bad_seed = tmp_path / "s.jsonl"
    bad_seed.write_text('{"instruction": "a"}\n{"text": 1}\n')
    config = write_config(tmp_path / "sl.yaml", {"out": "o", "backend": {"type": "fake"},
                                                 "self_lengthen": {"seeds": "s.jsonl"}})
    result = _cli("self-lengthen", config)
    assert result.exit_code == 2 and "s.jsonl:2:" in result.output


def test_cli_token_budget_exits_3_and_a_rerun_finishes(tmp_path):
    config = write_config(tmp_path / "sl.yaml", {"out": "o", "backend": {"type": "fake"},
                                                 "run": {"progress": False}, "self_lengthen": {"n_instructions": 4}})
    stopped = _cli("self-lengthen", config, "--token-budget", 3000)
    assert stopped.exit_code == 3 and "rerun the same command to continue" in stopped.output
    assert not (tmp_path / "o/round_1/gen_sft.jsonl").exists()
    finished = _cli("self-lengthen", config)
    assert finished.exit_code == 0, finished.output
    assert check_chat_file(tmp_path / "o/round_1/gen_sft.jsonl") == []


def test_every_option_has_help_and_every_command_an_example():
    from typer.main import get_command

    group = get_command(app)
    for name, command in group.commands.items():
        assert "Example" in (command.help or ""), f"{name} has no example"
        for param in command.params:
            assert getattr(param, "help", None), f"{name} {param.name} has no help"
