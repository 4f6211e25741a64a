"""One Llama-3 chat layout: the build's token ids and synth's text prompts render it the same way."""

from __future__ import annotations

import numpy as np
import pytest
from synth_helpers import META_LLAMA3_TEMPLATE

from mixcraft.core.chat import llama3_prompt, render_chat
from mixcraft.synth.chat_template import prompt_renderer, render_jinja

# Content with surrounding whitespace, where the two copies of the layout used to disagree.
CONVERSATION = [
    {"role": "system", "content": "\nBe thorough. "},
    {"role": "user", "content": "  Hello there.\n"},
    {"role": "assistant", "content": "\n\n  General Kenobi!\n\n"},
]


def test_build_ids_decode_to_the_text_layout_synth_sends(tok):
    ids, mask = render_chat(CONVERSATION, tok)  # what the build packs
    decoded = tok.decode(ids.tolist())
    assert decoded == llama3_prompt(CONVERSATION, add_generation_prompt=False)
    assert "<|end_header_id|>\n\nHello there.<|eot_id|>" in decoded  # stripped, as Meta's reference strips
    # What synth sends a model for the same conversation up to its last turn, in completions mode,
    # is exactly the build's rendering up to where the assistant's content starts.
    prompt = prompt_renderer("llama3")(CONVERSATION[:-1], "")
    assert decoded.startswith(prompt) and decoded[len(prompt):] == "General Kenobi!<|eot_id|>"
    counted = tok.decode([i for i, m in zip(ids.tolist(), mask.tolist(), strict=True) if m])
    assert counted == "General Kenobi!<|eot_id|>"


def test_the_layout_is_metas_template(tok):
    """Meta-Llama-3-8B-Instruct's own Jinja template (content | trim) renders the same text."""
    assert render_jinja(META_LLAMA3_TEMPLATE, CONVERSATION[:-1]) == llama3_prompt(CONVERSATION[:-1])
    full = render_jinja(META_LLAMA3_TEMPLATE, CONVERSATION).removesuffix(
        "<|start_header_id|>assistant<|end_header_id|>\n\n")  # render_jinja always opens a turn
    assert full == llama3_prompt(CONVERSATION, add_generation_prompt=False)


@pytest.mark.parametrize("loss_on_input", [False, True])
def test_the_tokenizer_template_path_agrees_on_whitespace_content(tok, tmp_path, loss_on_input):
    template = tmp_path / "llama3.jinja"
    template.write_text(META_LLAMA3_TEMPLATE)
    a = render_chat(CONVERSATION, tok, loss_on_input=loss_on_input)
    b = render_chat(CONVERSATION, tok, template="tokenizer", chat_template=str(template),
                    loss_on_input=loss_on_input)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[1].sum() > 0


def test_a_prefill_is_kept_verbatim_after_the_assistant_header():
    prompt = llama3_prompt([{"role": "user", "content": " Go "}], prefill="Instruction 1: a\nInstruction 2:")
    assert prompt.endswith("user<|end_header_id|>\n\nGo<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
                           "\n\nInstruction 1: a\nInstruction 2:")
