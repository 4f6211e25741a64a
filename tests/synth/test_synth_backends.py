"""The real backends: an OpenAI-compatible server on loopback, and a tiny local transformers model."""

from __future__ import annotations

import asyncio
import json
import resource
import time

import pytest
from synth_helpers import write_config
from typer.testing import CliRunner

from mixcraft.core.chat import llama3_prompt
from mixcraft.errors import UserError
from mixcraft.synth.backends import (
    REFERENCE_STOP,
    BackendError,
    OpenAIConfig,
    SamplingParams,
    TransformersConfig,
)
from mixcraft.synth.chatjsonl import check_chat_file
from mixcraft.synth.cli import app
from mixcraft.synth.make_backend import make_backend
from mixcraft.synth.textops import check_response

ASK = [{"role": "user", "content": "Write a long essay about rivers."}]
PREFILL = "Instruction 1: Write about rain.\nInstruction 2: Write about snow.\nInstruction 3:"


def _openai(url: str, concurrency: int = 4, **kw):
    return make_backend(OpenAIConfig(endpoint=url, timeout_s=5, backoff_s=0.01, **kw), concurrency=concurrency)


def _call(backend, *calls):
    """Run backend calls on one event loop: `calls` are (method, args) pairs; closes the backend."""

    async def go():
        try:
            await backend.start()
            return [await getattr(backend, name)(*args) for name, *args in calls]
        finally:
            await backend.aclose()

    return asyncio.run(go())


def test_openai_chat_and_prefill_modes(openai_server):
    server = openai_server()
    backend = _openai(server.url)  # no model: the server's first listed model is used
    reply, cont = _call(backend, ("chat", ASK, SamplingParams(seed=3)), ("complete", ASK, PREFILL, SamplingParams(seed=3)))
    assert backend.model == "loopback-fake"
    assert check_response(reply.text) in (None, "no_final_punctuation", "repeated_ngram", "stop_word")
    assert reply.completion_tokens > 0
    body = server.bodies[0]
    assert body["route"] == "/v1/chat/completions" and body["seed"] == 3
    # Self-Lengthen's decoding defaults and stop strings go over the wire.
    assert (body["temperature"], body["top_p"], body["top_k"], body["repetition_penalty"]) == (0.7, 0.8, 20, 1.1)
    assert body["max_tokens"] == 16384 and body["stop"] == list(REFERENCE_STOP)
    assert cont.text.startswith(" Write a detailed")
    assert server.bodies[1]["continue_final_message"] is True
    assert server.bodies[1]["messages"][-1] == {"role": "assistant", "content": PREFILL}

    completions = _openai(server.url, model="tiny-fake", prefill_mode="completions")
    (cont2,) = _call(completions, ("complete", ASK, PREFILL, SamplingParams(seed=3)))
    assert cont2.text == cont.text  # same prompt, same seed, either route
    assert server.bodies[-1]["route"] == "/v1/completions"
    assert server.bodies[-1]["prompt"] == llama3_prompt(ASK, prefill=PREFILL)  # mixcraft.core.chat's layout
    assert backend.usage.requests == 2 and backend.usage.errors == {}


def test_openai_retries_and_counts_transient_errors(openai_server):
    server = openai_server(faults=["http_500", "not_json", "no_choices", "drop"])
    backend = _openai(server.url, model="m")
    (reply,) = _call(backend, ("chat", ASK, SamplingParams(seed=1)))
    assert reply.text
    assert backend.usage.errors == {"http_500": 1, "malformed_response": 2, "transport_error": 1}
    assert backend.usage.retries == 4 and backend.usage.requests == 1


def test_a_request_the_server_never_answers_hits_its_deadline_and_is_retried(openai_server):
    server = openai_server(faults=["hang"])
    backend = make_backend(OpenAIConfig(endpoint=server.url, model="m", timeout_s=0.5, backoff_s=0.01))
    start = time.monotonic()
    (reply,) = _call(backend, ("chat", ASK, SamplingParams(seed=1)))
    assert reply.text and backend.usage.errors == {"timeout": 1}
    assert time.monotonic() - start < 3


def test_openai_gives_up_after_max_retries(openai_server):
    server = openai_server(faults=["http_500"] * 3)
    backend = _openai(server.url, model="m", max_retries=2)
    with pytest.raises(BackendError, match=r"HTTP 500.*after 3 attempts") as err:
        _call(backend, ("chat", ASK, SamplingParams()))
    assert err.value.kind == "http_500" and backend.usage.errors == {"http_500": 3}


def test_openai_rejected_request_is_not_retried(openai_server):
    server = openai_server(faults=["http_400"])
    backend = _openai(server.url, model="m")
    with pytest.raises(BackendError, match="HTTP 400") as err:
        _call(backend, ("chat", ASK, SamplingParams()))
    assert err.value.permanent and backend.usage.errors == {"http_400": 1} and backend.usage.retries == 0
    assert len(server.bodies) == 1


def test_openai_client_errors_are_user_errors(openai_server):
    server = openai_server(faults=["http_404"])
    with pytest.raises(UserError, match=r"HTTP 404.*check backend\.model, backend\.endpoint"):
        _call(_openai(server.url, model="m"), ("chat", ASK, SamplingParams()))
    with pytest.raises(UserError, match=r"chat_template .*nowhere\.jinja: no such file"):
        _openai(server.url, prefill_mode="completions", chat_template="/nowhere.jinja")


def test_connections_follow_concurrency_past_httpx_default_of_100(openai_server):
    server = openai_server(latency_s=1.0)
    backend = _openai(server.url, concurrency=300, model="m")
    start = time.monotonic()

    async def burst():
        try:
            return await asyncio.gather(*[backend.chat(ASK, SamplingParams(seed=i, max_tokens=8)) for i in range(300)])
        finally:
            await backend.aclose()

    replies = asyncio.run(burst())
    assert len(replies) == 300 and server.stats.peak == 300  # all 300 at once: no pool of 100
    assert time.monotonic() - start < 6  # one latency, not three


def test_the_open_file_limit_is_raised_to_fit_the_connections():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 3000:
        pytest.skip(f"hard open-file limit {hard} is below what this test needs")
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
    try:
        backend = make_backend(OpenAIConfig(model="m"), concurrency=2000)
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 2000
        asyncio.run(backend.aclose())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_unreachable_endpoint_fails_fast_with_a_clear_message(tmp_path):
    (tmp_path / "doc.txt").write_text("words " * 50)
    config = write_config(tmp_path / "qa.yaml", {
        "out": "o", "backend": {"type": "openai", "endpoint": "http://127.0.0.1:9/v1", "max_retries": 1,
                                "timeout_s": 2, "backoff_s": 0.01},
        "long_qa": {"inputs": ["doc.txt"], "min_doc_words": 10, "chunk_words": 10}})
    start = time.monotonic()
    result = _cli("long-qa", config)
    assert result.exit_code == 2, result.output
    assert "cannot connect after 2 attempts" in result.output and "start the server" in result.output
    assert time.monotonic() - start < 10


def test_cli_against_a_loopback_openai_server(openai_server, tmp_path):
    server = openai_server(faults=["http_500", "drop", "hang"])
    config = write_config(tmp_path / "sl.yaml", {
        "out": "sl", "backend": {"type": "openai", "timeout_s": 1, "backoff_s": 0.01},
        "run": {"concurrency": 4, "progress": False}, "self_lengthen": {"n_instructions": 6}})
    result = _cli("self-lengthen", config, "--endpoint", server.url)
    assert result.exit_code == 0, result.output
    assert "http_500 1" in result.output and "transport_error 1" in result.output and "timeout 1" in result.output
    out = tmp_path / "sl" / "round_1" / "gen_sft.jsonl"
    assert check_chat_file(out) == [] and out.read_text().strip(), "no samples from the loopback server"
    assert {b["route"] for b in server.bodies} == {"/v1/chat/completions"}
    assert any(b.get("continue_final_message") for b in server.bodies)


def test_transformers_backend_renders_template_and_continues_prefill(self_lengthen_model):
    from transformers import AutoTokenizer

    backend = make_backend(TransformersConfig(model=str(self_lengthen_model)))
    reply, cont, cut = _call(backend, ("chat", ASK, SamplingParams(max_tokens=100, seed=0)),
                             ("complete", ASK, PREFILL, SamplingParams(max_tokens=100, seed=0)),
                             ("chat", ASK, SamplingParams(max_tokens=5, seed=0)))
    assert reply.text.startswith("Yes, here is an overview") and reply.text.endswith("ended service!")
    assert reply.finish_reason == "stop"
    tok = AutoTokenizer.from_pretrained(self_lengthen_model)
    rendered = tok.apply_chat_template(ASK, tokenize=False, add_generation_prompt=True)
    assert rendered == llama3_prompt(ASK)  # Meta's template and mixcraft's layout agree
    assert reply.prompt_tokens == len(tok(rendered, add_special_tokens=False).input_ids)
    assert cont.text == " Write one illustrated guide to medieval castle architecture across Wales\n"
    assert cut.finish_reason == "length" and cut.completion_tokens == 5
    assert backend.usage.requests == 3


def test_transformers_backend_stops_on_stop_strings(self_lengthen_model):
    backend = make_backend(TransformersConfig(model=str(self_lengthen_model)))
    (reply,) = _call(backend, ("chat", ASK, SamplingParams(max_tokens=100, seed=0).with_stop("beacons")))
    assert reply.text == "Yes, here is an overview of " and reply.finish_reason == "stop"


def test_transformers_backend_needs_a_chat_template(tmp_path, self_lengthen_model):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(self_lengthen_model, bare)
    cfg_path = bare / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("chat_template", None)
    cfg_path.write_text(json.dumps(cfg))
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(UserError, match="no chat template; set backend.chat_template to llama3"):
        make_backend(TransformersConfig(model=str(bare)))
    assert make_backend(TransformersConfig(model=str(bare), chat_template="llama3")) is not None


def test_self_lengthen_end_to_end_through_a_local_model(self_lengthen_model, tmp_path):
    # Every answer of the chain model has the same length, so the keep rule draws with equal ranks;
    # seed 4 keeps 2 of the 4 initial answers and both of their extensions (other seeds may keep
    # none: with 2 equally long samples each is kept with p = 0.16).
    config = write_config(tmp_path / "sl.yaml", {
        "out": "o", "seed": 4, "backend": {"type": "transformers", "model": str(self_lengthen_model)},
        "sampling": {"max_tokens": 64}, "run": {"progress": False},
        "self_lengthen": {"n_instructions": 2, "extensions_per_response": 1, "extend_passes": 1}})
    result = _cli("self-lengthen", config)
    assert result.exit_code == 0, result.output
    round_dir = tmp_path / "o" / "round_1"
    summary = json.loads((round_dir / "summary.json").read_text())
    stages = {s["name"].split()[-1]: s for s in summary["stages"]}
    assert stages["instructions"]["ok"] == 2 and stages["initial"]["ok"] == 4
    out = round_dir / "gen_sft.jsonl"
    assert check_chat_file(out) == [] and check_chat_file(round_dir / "ext_sft.jsonl") == []
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows, "the local model run produced no samples"
    for row in rows:
        user, assistant = row["messages"]
        assert user["content"] == "Write one illustrated guide to medieval castle architecture across Wales"
        # The Extender prefilled 2 of the 4 enriched paragraphs; the model continued from "." alone.
        assert assistant["content"] == (
            "Yes, here is an overview of beacons:\n\nEarly towers burned wood fires. Beyond that modern solar "
            "panels now power LED arrays whose flashes mariners still recognise by distinctive rhythms today!"
        )
        assert row["meta"]["n_words"] > 1.2 * row["meta"]["n_words_initial"]


def test_long_qa_end_to_end_through_a_local_model(long_qa_model, tmp_path):
    doc = tmp_path / "book.txt"
    doc.write_text("The merchants of the town preferred the northern harbour near the old mill. " * 40)
    config = write_config(tmp_path / "qa.yaml", {
        "out": "o", "backend": {"type": "transformers", "model": str(long_qa_model)},
        "sampling": {"max_tokens": 64}, "run": {"progress": False},
        "long_qa": {"inputs": ["book.txt"], "chunk_words": 100, "min_doc_words": 100, "pairs_per_doc": 2}})
    result = _cli("long-qa", config)
    assert result.exit_code == 0, result.output
    out = tmp_path / "o" / "long_qa.jsonl"
    assert check_chat_file(out) == []
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert row["loss_on_input"] is True
        assert row["messages"][0]["content"].startswith("The merchants of the town")
        assert "old mill. \n\nWhich port did merchants favour?" in row["messages"][0]["content"]
        assert row["messages"][1]["content"] == "The northern harbour near an old mill."
