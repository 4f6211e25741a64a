"""Chat rendering for SFT: messages -> token ids plus a loss mask, and the same layout as text.

The Llama-3 chat layout is defined once, here, and used twice: as token ids with a loss mask
(`render_llama3`, the build's chat reader) and as a text prompt (`llama3_prompt`, what
`mixcraft synth` sends to a model that has no server-side template):

    <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\\n\\n{content}<|eot_id|> ...

Content is stripped of surrounding whitespace, as Meta's reference does both in its Python
`ChatFormat.encode_message` (`message["content"].strip()`) and in Meta-Llama-3-8B-Instruct's
chat template (`message['content'] | trim`): a model served with that template has only ever
seen stripped turns, so training data rendered the same way matches what it is prompted with.

`mask[i] == 1` means token i counts in the loss: the content of assistant turns and the
`<|eot_id|>` that closes each (so the model learns to stop). Headers never count. With
`loss_on_input`, user and system content count too (Llama 2 Long's ablation: LM loss on the
long inputs helps).

With `template: tokenizer` the tokenizer's own chat template renders the conversation
(transformers' `apply_chat_template`), and the mask is computed by rendering prefixes: an
assistant turn's tokens are those that rendering messages[:i+1] adds to rendering
messages[:i] with the generation prompt, mapped to tokens by character offsets. A sample where
that would be inexact is dropped with a reason instead (`special_token_in_content`,
`template_not_prefix_stable`, `mask_boundary_inside_token`, `template_mask_ambiguous`).
"""

from __future__ import annotations

import typing
from typing import Literal

import numpy as np

from mixcraft.core.tokenize import Tok
from mixcraft.errors import UserError

LLAMA3_BOS, LLAMA3_EOT = "<|begin_of_text|>", "<|eot_id|>"
LLAMA3_START, LLAMA3_END = "<|start_header_id|>", "<|end_header_id|>"
LLAMA3_AFTER_HEADER = "\n\n"


def llama3_content(message: dict[str, str]) -> str:
    """A turn's text as the layout writes it: stripped (see the module docstring for why)."""
    return message["content"].strip()


def llama3_header(role: str) -> str:
    return f"{LLAMA3_START}{role}{LLAMA3_END}{LLAMA3_AFTER_HEADER}"


def llama3_prompt(messages: list[dict[str, str]], *, add_generation_prompt: bool = True,
                  prefill: str = "") -> str:
    """The layout as text: every turn closed by <|eot_id|>, then (optionally) an open assistant
    turn that starts with `prefill` verbatim, as vLLM's `continue_final_message` continues it."""
    turns = "".join(llama3_header(m["role"]) + llama3_content(m) + LLAMA3_EOT for m in messages)
    tail = llama3_header("assistant") + prefill if add_generation_prompt else prefill
    return LLAMA3_BOS + turns + tail


def render_llama3(messages: list[dict[str, str]], tok: Tok, *, loss_on_input: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """`llama3_prompt(messages, add_generation_prompt=False)` as token ids, and its loss mask."""
    bos = tok.special_id(LLAMA3_BOS)
    start, end, eot = (tok.special_id(t) for t in (LLAMA3_START, LLAMA3_END, LLAMA3_EOT))
    ids: list[np.ndarray] = [np.asarray([bos], dtype=np.uint32)]
    mask: list[np.ndarray] = [np.zeros(1, dtype=np.uint8)]
    for m in messages:
        header = np.concatenate([[start], tok.encode(m["role"]), [end], tok.encode(LLAMA3_AFTER_HEADER)])
        body = np.concatenate([tok.encode(llama3_content(m)), [eot]]).astype(np.uint32)
        counts = m["role"] == "assistant" or loss_on_input
        ids += [header.astype(np.uint32), body]
        mask += [np.zeros(len(header), dtype=np.uint8), np.full(len(body), 1 if counts else 0, dtype=np.uint8)]
    return np.concatenate(ids), np.concatenate(mask)


# -- the tokenizer's own chat template -------------------------------------------------------

ChatTemplate = Literal["llama3", "tokenizer"]  # a chat source's `template` key
TEMPLATE_CHOICES = typing.get_args(ChatTemplate)


class ChatSkip(Exception):
    """A conversation that cannot be rendered exactly; `args[0]` is the snake_case reason."""


def render_chat(messages: list[dict[str, str]], tok: Tok, *, template: str = "llama3",
                chat_template: str | None = None, loss_on_input: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and loss mask with the built-in Llama-3 format or the tokenizer's template."""
    if template == "llama3":
        return render_llama3(messages, tok, loss_on_input=loss_on_input)
    return render_with_template(messages, tok, chat_template=chat_template, loss_on_input=loss_on_input)


def chat_tokenizer(tok: Tok, chat_template: str | None):
    """A transformers `PreTrainedTokenizerFast` over the same vocabulary, carrying the chat
    template (the file `chat_template`, else `tokenizer_config.json` beside tokenizer.json)."""
    cache = tok.__dict__.setdefault("_chat_tokenizers", {})
    if chat_template in cache:
        return cache[chat_template]
    import json as _json

    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast


    if chat_template:
        source = chat_template
        text = open(chat_template, encoding="utf-8").read()
    else:
        config = tok.json_path.with_name("tokenizer_config.json") if tok.json_path else None
        text = _json.loads(config.read_text()).get("chat_template") if config and config.is_file() else None
        source = str(config)
        if not isinstance(text, str):
            raise UserError(f"tokenizer {tok.name!r} has no chat template (no `chat_template` in {source}); "
                            "set the chat reader's `chat_template: FILE.jinja`, or use `template: llama3`")
    # A private copy: mixcraft's Tok encodes special-token text in documents as plain text,
    # while a rendered template's special tokens must be the real control tokens.
    hf = Tokenizer.from_str(tok.hf.to_str())
    hf.encode_special_tokens = False
    bos, eos = tok.bos_id, tok.eos_id
    fast = PreTrainedTokenizerFast(tokenizer_object=hf, chat_template=text,
                                   bos_token=hf.id_to_token(bos) if bos is not None else None,
                                   eos_token=hf.id_to_token(eos) if eos is not None else None)
    fast.mixcraft_template_source = source
    cache[chat_template] = fast
    return fast


def _counted_spans(messages, fast, full: str, loss_on_input: bool) -> list[tuple[int, int]]:
    """Character spans of `full` that count in the loss, found by rendering prefixes: an
    assistant turn is what rendering messages[:i+1] adds to messages[:i] plus the generation
    prompt (so the header is excluded and the end-of-turn token included)."""
    def render(msgs, gen=False):
        return fast.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen) if msgs or gen else ""

    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant" and not loss_on_input:
            continue
        upto = render(messages[: i + 1])
        before = render(messages[:i], gen=m["role"] == "assistant")
        if not (upto.startswith(before) and full.startswith(upto)):
            raise ChatSkip("template_not_prefix_stable")
        start = len(before)
        if m["role"] != "assistant":  # no generation prompt marks a user header's end: find the content
            at = upto.find(m["content"].strip(), len(render(messages[:i])))
            if at < 0:
                raise ChatSkip("template_mask_ambiguous")
            start = at
        spans.append((start, len(upto)))
    return spans


def render_with_template(messages: list[dict[str, str]], tok: Tok, *, chat_template: str | None = None,
                         loss_on_input: bool = False) -> tuple[np.ndarray, np.ndarray]:
    fast = chat_tokenizer(tok, chat_template)
    specials = [t for t in fast.all_special_tokens + list(fast.added_tokens_encoder) if t]
    if any(s in m["content"] for m in messages for s in specials):
        raise ChatSkip("special_token_in_content")  # it would turn into a control token
    full = fast.apply_chat_template(messages, tokenize=False)
    spans = _counted_spans(messages, fast, full, loss_on_input)
    enc = fast(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = np.asarray(enc["input_ids"], dtype=np.uint32)
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    ts, te = offsets[:, 0], offsets[:, 1]
    mask = np.zeros(len(ids), dtype=np.uint8)
    for s, e in spans:
        if np.any((ts < s) & (s < te)) or np.any((ts < e) & (e < te)):
            raise ChatSkip("mask_boundary_inside_token")  # the mask would be off by part of a token
        mask[(ts >= s) & (te <= e) & (te > ts)] = 1
    return ids, mask
