"""The real backends: an OpenAI-compatible server on loopback, and a tiny local transformers model."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from mixcraft.errors import UserError
from mixcraft.synth.backends import BackendConfig, BackendError, SamplingParams, make_backend
from mixcraft.synth.chat_template import LLAMA3_CHAT_TEMPLATE, render_chat
from mixcraft.synth.chatjsonl import check_chat_file
from mixcraft.synth.cli import app
from mixcraft.synth.textops import check_response

ASK = [{"role": "user", "content": "Write a long essay about rivers."}]
PREFILL = "Instruction 1: Write about rain.\nInstruction 2: Write about snow.\nInstruction 3:"


def _openai(url: str, **kw):
    return make_backend(BackendConfig(kind="openai", endpoint=url, timeout_s=5, backoff_s=0.01, **kw))


def test_openai_chat_and_prefill_modes(openai_server):
    server = openai_server()
    backend = _openai(server.url)  # no --model: the server's first listed model is used
    assert backend.model == "tiny-fake"
    reply = backend.chat(ASK, SamplingParams(seed=3))
    assert (
        check_response(reply.text) in (None, "no_final_punctuation", "repeated_ngram")
        and reply.completion_tokens > 0
    )
    body = server.bodies[-1]
    assert body["route"] == "/v1/chat/completions" and body["seed"] == 3
    # Self-Lengthen's decoding defaults go over the wire.
    assert (body["temperature"], body["top_p"], body["top_k"], body["repetition_penalty"]) == (
        0.7,
        0.8,
        20,
        1.1,
    )
    cont = backend.complete(ASK, PREFILL, SamplingParams(seed=3))
    assert cont.text.startswith(" Write a detailed")
    assert server.bodies[-1]["continue_final_message"] is True
    assert server.bodies[-1]["messages"][-1] == {"role": "assistant", "content": PREFILL}

    completions = _openai(server.url, model="tiny-fake", prefill_mode="completions", chat_template="llama3")
    cont2 = completions.complete(ASK, PREFILL, SamplingParams(seed=3))
    assert cont2.text == cont.text  # same prompt, same seed, either route
    prompt = server.bodies[-1]["prompt"]
    assert server.bodies[-1]["route"] == "/v1/completions"
    assert prompt == render_chat(LLAMA3_CHAT_TEMPLATE, ASK, prefill=PREFILL)
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n" + PREFILL)
    assert backend.usage.requests == 2 and backend.usage.errors == {}


def test_openai_retries_and_counts_transient_errors(openai_server):
    server = openai_server(faults=["http_500", "not_json", "no_choices", "drop"])
    backend = _openai(server.url, model="m")
    reply = backend.chat(ASK, SamplingParams(seed=1))
    assert reply.text
    assert backend.usage.errors == {"http_500": 1, "malformed_response": 2, "transport_error": 1}
    assert backend.usage.retries == 4 and backend.usage.requests == 1


def test_openai_gives_up_after_max_retries(openai_server):
    server = openai_server(faults=["http_500"] * 3)
    backend = _openai(server.url, model="m", max_retries=2)
    with pytest.raises(BackendError, match=r"HTTP 500.*after 3 attempts") as err:
        backend.chat(ASK, SamplingParams())
    assert err.value.kind == "http_500" and backend.usage.errors == {"http_500": 3}


def test_openai_rejected_request_is_not_retried(openai_server):
    server = openai_server(faults=["http_400"])
    backend = _openai(server.url, model="m")
    with pytest.raises(BackendError, match="HTTP 400") as err:
        backend.chat(ASK, SamplingParams())
    assert err.value.permanent and backend.usage.errors == {"http_400": 1} and backend.usage.retries == 0
    assert len(server.bodies) == 1


def test_openai_client_errors_are_user_errors(openai_server):
    server = openai_server(faults=["http_404"])
    with pytest.raises(UserError, match=r"HTTP 404.*check --model"):
        _openai(server.url, model="m").chat(ASK, SamplingParams())
    with pytest.raises(UserError, match="needs --chat-template"):
        _openai(server.url, model="m", prefill_mode="completions")


def test_unreachable_endpoint_fails_fast_with_a_clear_message(tmp_path):
    (tmp_path / "doc.txt").write_text("words " * 50)
    start = time.monotonic()
    result = CliRunner().invoke(
        app,
        [
            "long-qa",
            "--input",
            str(tmp_path / "doc.txt"),
            "--out",
            str(tmp_path / "o"),
            "--min-doc-words",
            "10",
            "--chunk-words",
            "10",
            "--endpoint",
            "http://127.0.0.1:9/v1",
            "--max-retries",
            "1",
            "--timeout",
            "2",
        ],
    )
    assert result.exit_code == 2
    assert "cannot connect after 2 attempts" in result.output and "start the server" in result.output
    assert time.monotonic() - start < 10


def test_cli_against_a_loopback_openai_server(openai_server, tmp_path):
    server = openai_server(faults=["http_500", "drop"])
    result = CliRunner().invoke(
        app,
        [
            "self-lengthen",
            "--endpoint",
            server.url,
            "--out",
            str(tmp_path / "sl"),
            "--n-instructions",
            "6",
            "--concurrency",
            "4",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "http_500 1" in result.output and "transport_error 1" in result.output
    out = tmp_path / "sl" / "round_1" / "gen_sft.jsonl"
    assert check_chat_file(out) == [] and out.read_text().strip(), "no samples from the loopback server"
    routes = {b["route"] for b in server.bodies}
    assert routes == {"/v1/chat/completions"}
    assert any(b.get("continue_final_message") for b in server.bodies)


def test_transformers_backend_renders_template_and_continues_prefill(self_lengthen_model):
    from transformers import AutoTokenizer

    backend = make_backend(BackendConfig(kind="transformers", model=str(self_lengthen_model)))
    reply = backend.chat(ASK, SamplingParams(max_tokens=100, seed=0))
    assert reply.text.startswith("Yes, here is an overview") and reply.text.endswith("ended service!")
    assert reply.finish_reason == "stop"
    tok = AutoTokenizer.from_pretrained(self_lengthen_model)
    rendered = tok.apply_chat_template(ASK, tokenize=False, add_generation_prompt=True)
    assert reply.prompt_tokens == len(tok(rendered, add_special_tokens=False).input_ids)
    assert rendered.count("<|begin_of_text|>") == 1
    cont = backend.complete(ASK, PREFILL, SamplingParams(max_tokens=100, seed=0))
    assert cont.text == " Write one illustrated guide to medieval castle architecture across Wales\n"
    cut = backend.chat(ASK, SamplingParams(max_tokens=5, seed=0))
    assert cut.finish_reason == "length" and cut.completion_tokens == 5
    assert backend.usage.requests == 3


def test_transformers_backend_needs_a_chat_template(tmp_path, self_lengthen_model):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(self_lengthen_model, bare)
    cfg_path = bare / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("chat_template", None)
    cfg_path.write_text(json.dumps(cfg))
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(UserError, match="no chat template; pass --chat-template llama3"):
        make_backend(BackendConfig(kind="transformers", model=str(bare)))
    assert (
        make_backend(BackendConfig(kind="transformers", model=str(bare), chat_template="llama3")) is not None
    )


def test_self_lengthen_end_to_end_through_a_local_model(self_lengthen_model, tmp_path):
    # Every answer of the chain model has the same length, so the keep rule draws with equal ranks;
    # seed 4 keeps 2 of the 4 initial answers and both of their extensions (seeds 0-3 keep none
    # of the extensions: with 2 equally long samples each is kept with p = 0.16).
    result = CliRunner().invoke(
        app,
        [
            "self-lengthen",
            "--backend",
            "transformers",
            "--model",
            str(self_lengthen_model),
            "--out",
            str(tmp_path),
            "--n-instructions",
            "2",
            "--extensions-per-response",
            "1",
            "--extend-passes",
            "1",
            "--max-new-tokens",
            "64",
            "--no-progress",
            "--seed",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "round_1" / "summary.json").read_text())
    stages = {s["name"].split()[-1]: s for s in summary["stages"]}
    assert stages["instructions"]["ok"] == 2 and stages["initial"]["ok"] == 4
    out = tmp_path / "round_1" / "gen_sft.jsonl"
    assert check_chat_file(out) == [] and check_chat_file(tmp_path / "round_1" / "ext_sft.jsonl") == []
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
    result = CliRunner().invoke(
        app,
        [
            "long-qa",
            "--backend",
            "transformers",
            "--model",
            str(long_qa_model),
            "--input",
            str(doc),
            "--out",
            str(tmp_path / "o"),
            "--chunk-words",
            "100",
            "--min-doc-words",
            "100",
            "--pairs-per-doc",
            "2",
            "--loss-on-input",
            "--no-progress",
            "--max-new-tokens",
            "64",
        ],
    )
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
