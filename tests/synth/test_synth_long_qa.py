"""Long-document QA with the fake backend: inputs, chunking, critique, samples, CLI errors."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest
from synth_helpers import write_config
from typer.testing import CliRunner

from mixcraft.synth import prompts
from mixcraft.synth.backends import FakeConfig, SamplingParams
from mixcraft.synth.chatjsonl import check_chat_file
from mixcraft.synth.cli import app
from mixcraft.synth.config import LongQAConfig, LongQATask
from mixcraft.synth.fake import FakeBackend
from mixcraft.synth.long_qa import ask_qa, chunk_words, read_documents, run_long_qa, truncate_words
from mixcraft.synth.runner import RunOptions

QUIET = RunOptions(concurrency=4, progress=False)


def _ask(chunk, style, backend):
    return asyncio.run(ask_qa(chunk, style, backend, SamplingParams()))


def _doc(n_words: int, tag: str) -> str:
    lines = [" ".join(f"{tag}{i + j}" for j in range(10)) + "." for i in range(0, n_words, 10)]
    return "\n".join(lines)


@pytest.fixture
def corpus(tmp_path):
    books = tmp_path / "books"
    (books / "sub").mkdir(parents=True)
    (books / "a.txt").write_text(_doc(600, "alpha"))
    (books / "sub" / "b.txt").write_text(_doc(450, "beta"))
    (books / "empty.txt").write_text("  \n")
    jsonl = tmp_path / "docs.jsonl"
    rows = [
        json.dumps({"text": _doc(500, "gamma")}),
        "{broken",
        json.dumps({"body": "x"}),
        json.dumps({"text": _doc(50, "tiny")}),
    ]
    jsonl.write_text("\n".join(rows) + "\n")
    return books, jsonl


def test_read_documents_counts_every_skip(corpus):
    books, jsonl = corpus
    skips: Counter = Counter()
    docs = read_documents([books, jsonl], "text", skips)
    assert [d.doc_id.rsplit("/", 1)[-1] for d in docs] == ["a.txt", "b.txt", "docs.jsonl:1", "docs.jsonl:4"]
    assert skips == Counter({"empty_text": 1, "bad_json": 1, "missing_field": 1})


def test_chunks_and_truncation_keep_the_original_text():
    text = _doc(90, "w") + "\nthe last four words."
    chunks = chunk_words(text, 30)
    assert [len(c.split()) for c in chunks] == [30, 30, 30, 4]
    assert all(c in text for c in chunks) and "\n" in chunks[0]
    assert (
        truncate_words(text, 20) == text[: len(truncate_words(text, 20))]
        and len(truncate_words(text, 20).split()) == 20
    )


def test_self_critique_rejects_unsupported_pairs():
    def reply(messages, prefill, params):
        ask = messages[-1]["content"]
        return (
            "No, the passage does not say that."
            if prompts.YES_NO in ask
            else "Question: Why?\nAnswer: Because."
        )

    qa, reason = _ask("some passage", "normal", FakeBackend(reply=reply))
    assert qa is None and reason == "failed_self_critique"
    long_short = FakeBackend(reply=lambda m, p, s: "Question: Who?\nAnswer: " + "many words " * 8 + ".")
    assert _ask("passage", "short", long_short) == (None, "short_answer_too_long")
    assert _ask("passage", "normal", FakeBackend(reply=lambda m, p, s: "I cannot help.")) == (None, "unparseable_qa")


def test_loss_on_input_is_on_by_default_as_llama_2_long_trains():
    assert LongQATask().loss_on_input is True


@pytest.mark.parametrize("loss_on_input", [False, True])
def test_run_emits_document_plus_question_samples(tmp_path, corpus, loss_on_input):
    books, jsonl = corpus
    task = LongQATask(inputs=(str(books), str(jsonl)), chunk_words=100, min_doc_words=200, max_doc_words=480,
                      pairs_per_doc=4, loss_on_input=loss_on_input)
    cfg = LongQAConfig(out=str(tmp_path / "out"), backend=FakeConfig(), run=QUIET, long_qa=task)
    summary = asyncio.run(run_long_qa(cfg, FakeBackend()))
    out = tmp_path / "out" / "long_qa.jsonl"
    assert check_chat_file(out) == []
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and summary["samples"] == len(rows)
    assert summary["skipped"] == {"empty_text": 1, "bad_json": 1, "missing_field": 1, "too_short": 1}
    assert summary["stage"]["total"] == 3 * 4  # three documents long enough, four pairs each
    assert {r["meta"]["style"] for r in rows} == {"normal", "short"}
    for row in rows:
        user, assistant = row["messages"]
        document, question = user["content"].rsplit("\n\n", 1)
        assert len(document.split()) == row["meta"]["n_doc_words"] <= 480  # truncated to fit
        assert question.startswith("What does the passage say about")
        assert question.endswith(prompts.SHORT_ANSWER_HINT) == (row["meta"]["style"] == "short")
        assert assistant["content"] and assistant["content"].split()[0] in document  # quoted from the chunk
        assert row.get("loss_on_input", False) is loss_on_input


def test_cli_long_qa_and_its_errors(tmp_path, corpus):
    books, jsonl = corpus
    config = write_config(tmp_path / "qa.yaml", {"out": "o", "backend": {"type": "fake"}, "run": {"progress": False},
                                                 "long_qa": {"chunk_words": 100, "min_doc_words": 200}})
    runner = CliRunner()

    def run(*args):
        return runner.invoke(app, ["long-qa", str(config), *map(str, args)])

    ok = run("--input", books)
    assert ok.exit_code == 0, ok.output
    rows = [json.loads(x) for x in (tmp_path / "o" / "long_qa.jsonl").read_text().splitlines()]
    assert rows and all(r["loss_on_input"] is True for r in rows)  # the default, as the paper trains
    missing = run("--input", tmp_path / "nope", "--out", tmp_path / "o2")
    assert missing.exit_code == 2 and "no such file or folder" in missing.output
    field = run("--input", jsonl, "--set", "long_qa.text_field=content", "--out", tmp_path / "o3")
    assert field.exit_code == 2 and "no usable documents" in field.output and "missing_field" in field.output
    style = run("--input", books, "--set", "long_qa.answer_style=medium", "--out", tmp_path / "o4")
    assert style.exit_code == 2 and "long_qa.answer_style: expected one of normal, short, both" in style.output
    small = run("--input", books, "--set", "long_qa.max_doc_words=50", "--out", tmp_path / "o5")
    assert small.exit_code == 2 and "long_qa.max_doc_words: must be at least chunk_words (100)" in small.output
    none = run("--out", tmp_path / "o6")
    assert none.exit_code == 2 and "long_qa.inputs: no input given" in none.output
