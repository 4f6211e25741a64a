"""Chat: OpenAI/ShareGPT records, the Llama-3 format, the tokenizer's own template, the mask."""

from __future__ import annotations

import json

import numpy as np
import pytest

# Meta-Llama-3-8B-Instruct's chat template, as published in its tokenizer_config.json.
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
MESSAGES = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
EXPECTED = [  # (token, counts in the loss)
    ("<|begin_of_text|>", 0), ("<|start_header_id|>", 0), ("user", 0), ("<|end_header_id|>", 0), ("\n\n", 0),
    ("Hi", 0), ("<|eot_id|>", 0),
    ("<|start_header_id|>", 0), ("assistant", 0), ("<|end_header_id|>", 0), ("\n\n", 0),
    ("Hello", 1), ("!", 1), ("<|eot_id|>", 1),
]


@pytest.fixture(scope="session")
def template_file(tmp_path_factory):
    # One file for the session: the transformers tokenizer built for it is cached per path.
    path = tmp_path_factory.mktemp("template") / "llama3.jinja"
    path.write_text(LLAMA3_TEMPLATE)
    return str(path)


def _pairs(tok, ids, mask):
    return [(tok.decode([i]), int(m)) for i, m in zip(ids, mask, strict=True)]


def test_llama3_mask_token_by_token(tok):
    from mixcraft.core.chat import render_chat

    ids, mask = render_chat(MESSAGES, tok)
    assert _pairs(tok, ids, mask) == EXPECTED


def test_tokenizer_template_gives_the_same_tokens_and_mask(tok, template_file):
    from mixcraft.core.chat import render_chat

    ids, mask = render_chat(MESSAGES, tok, template="tokenizer", chat_template=template_file)
    assert _pairs(tok, ids, mask) == EXPECTED
    long = [{"role": "system", "content": "Be brief."}, *MESSAGES, {"role": "user", "content": "Why?"},
            {"role": "assistant", "content": "Because.\nThat is all."}]
    for loss_on_input in (False, True):
        a = render_chat(long, tok, loss_on_input=loss_on_input)
        b = render_chat(long, tok, template="tokenizer", chat_template=template_file, loss_on_input=loss_on_input)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
        assert a[1].sum() > 0
    ids, mask = render_chat(long, tok, template="tokenizer", chat_template=template_file)
    counted = tok.decode([i for i, m in zip(ids, mask, strict=True) if m])
    assert counted == "Hello!<|eot_id|>Because.\nThat is all.<|eot_id|>"


def test_special_token_text_in_content_is_skipped_not_injected(tok, template_file):
    from mixcraft.core.chat import ChatSkip, render_chat

    bad = [{"role": "user", "content": "say <|eot_id|>"}, {"role": "assistant", "content": "ok"}]
    with pytest.raises(ChatSkip, match="special_token_in_content"):
        render_chat(bad, tok, template="tokenizer", chat_template=template_file)


def test_tokenizer_without_template_is_one_clear_line(tok):
    from mixcraft.core.chat import render_chat
    from mixcraft.errors import UserError

    with pytest.raises(UserError, match=r"has no chat template .*chat_template: FILE\.jinja"):
        render_chat(MESSAGES, tok, template="tokenizer")


def test_chat_reader_openai_and_sharegpt(tmp_path, read_source):
    rows = [{"messages": MESSAGES},
            {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]},
            {"messages": [{"role": "user", "content": "no answer"}]},
            {"messages": [{"role": "wizard", "content": "?"}, {"role": "assistant", "content": "!"}]},
            {"other": 1}]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    docs, (ledger,) = read_source({"type": "chat", "paths": [str(tmp_path)], "template": "tokenizer"})
    assert [d.metadata["messages"] for d in docs] == [MESSAGES, MESSAGES]
    assert docs[0].metadata["template"] == "tokenizer"
    assert ledger.docs_dropped == {"no_assistant_turn": 1, "malformed_message": 1, "missing_messages": 1}


def test_chat_build_writes_the_mask(tmp_path, cli, template_file):
    from streaming import StreamingDataset

    (tmp_path / "chat").mkdir()
    rows = [{"messages": MESSAGES}] * 20  # 14 tokens each: four 64-token rows and a counted tail
    (tmp_path / "chat" / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "r.yaml").write_text(f"""name: sft
seq_len: 64
sources:
  - name: chat
    reader: {{type: chat, paths: [chat], template: tokenizer, chat_template: {template_file}}}
    proportion: 1.0
""")
    proc = cli("build", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    from mixcraft.core.tokenize import load_tokenizer

    tok = load_tokenizer("llama3")
    ds = StreamingDataset(local=str(tmp_path / "out" / "chat" / "64"), batch_size=1)
    assert ds.num_samples == 4
    stream = [(tok.decode([i]), int(m)) for k in range(ds.num_samples)
              for i, m in zip(ds[k]["input_ids"], ds[k]["mask"], strict=True)]
    assert stream == (EXPECTED * 20)[: 4 * 64]  # the mask travels with every token into the shards
