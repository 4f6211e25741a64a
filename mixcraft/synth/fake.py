"""A deterministic backend for tests and dry runs: no model, plausible-shaped replies.

The reply is a pure function of (messages, prefill, seed), so a run is reproducible and a retry
with a new seed gets a new answer. It recognises the generators' prompts by their fixed phrases
and answers each the way a cooperative model would: yes/no verdicts, one-line instructions,
multi-paragraph answers (about 1 in 10 cut off without final punctuation, 1 in 20 with a
repeated paragraph, 1 in 20 opening by talking about itself, so the filters have work), enriched drafts longer than the draft, QA pairs
that quote the passage. Words come from a 4,096-word made-up vocabulary, so accidental 10-word
repeats are practically impossible.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
from collections.abc import Callable

from mixcraft.synth import prompts
from mixcraft.synth.backends import Backend, Completion, Message, SamplingParams, Usage, cut_at_stop

_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "zi", "pa", "do", "fe", "gu", "hi", "ja", "be")
_VOCAB = [a + b + c for a in _SYLLABLES for b in _SYLLABLES for c in _SYLLABLES]
_GENRES = ("report", "guide", "essay", "story", "history", "analysis", "handbook", "chronicle")

Reply = Callable[[list[Message], str, SamplingParams], str]


class FakeBackend(Backend):
    """`reply` overrides the built-in answers (tests use it to script lengths, delays or errors).
    Stop strings and `max_tokens` apply as a server applies them (one word = one token here)."""

    name = "fake"

    def __init__(self, usage: Usage | None = None, reply: Reply | None = None, delay_s: float = 0.0):
        super().__init__(usage)
        self.reply = reply or fake_reply
        self.delay_s = delay_s

    async def _chat(self, messages: list[Message], params: SamplingParams) -> Completion:
        return await self._answer(messages, "", params)

    async def _complete(self, messages: list[Message], prefill: str, params: SamplingParams) -> Completion:
        return await self._answer(messages, prefill, params)

    async def _answer(self, messages: list[Message], prefill: str, params: SamplingParams) -> Completion:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return fake_completion(self.reply(messages, prefill, params), messages, prefill, params)


def fake_completion(text: str, messages: list[Message], prefill: str, params: SamplingParams) -> Completion:
    """`text` cut at the first stop string, then at `max_tokens` words, counted as a server would."""
    text, _ = cut_at_stop(text, params.stop)
    word_ends = [m.end() for m in re.finditer(r"\S+", text)]
    finish = "stop"
    if len(word_ends) > params.max_tokens:
        text, finish = text[: word_ends[params.max_tokens - 1]], "length"
    n_prompt = sum(len(m["content"].split()) for m in messages) + len(prefill.split())
    return Completion(text, n_prompt, len(text.split()), finish)


def fake_reply(messages: list[Message], prefill: str, params: SamplingParams) -> str:
    """The built-in deterministic answer to one of the generators' prompts."""
    rng = _rng(messages, prefill, params.seed)
    ask = messages[-1]["content"] if messages else ""
    if prefill.rstrip().endswith(":") and prefill.lstrip().startswith("Instruction 1:"):
        return (
            f" Write a detailed {rng.choice(_GENRES)} about {_words(rng, 4)}, with sections and examples.\n"
        )
    if prompts.YES_NO in ask:
        return "Yes." if rng.random() < 0.8 else "No."
    if "Reply in exactly this format" in ask:
        return _qa(ask, rng, short="short phrase" in ask)
    if prefill:  # continue the prefilled assistant turn with new paragraphs
        return "\n\n" + "\n\n".join(_paragraph(rng) for _ in range(rng.randint(2, 5)))
    if "Enrich the draft" in ask:
        draft = ask.split("Draft:\n\n", 1)[-1]
        paras = [
            p + " " + " ".join(_sentence(rng) for _ in range(rng.randint(1, 3))) for p in draft.split("\n\n")
        ]
        return "\n\n".join(paras + [_paragraph(rng)])
    return _answer(rng)


def _rng(messages: list[Message], prefill: str, seed: int | None) -> random.Random:
    key = json.dumps([messages, prefill, seed], sort_keys=True).encode()
    return random.Random(hashlib.sha256(key).hexdigest())


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_VOCAB) for _ in range(n))


def _sentence(rng: random.Random) -> str:
    text = _words(rng, rng.randint(8, 16))
    return text[0].upper() + text[1:] + "."


def _paragraph(rng: random.Random) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(3, 6)))


def _answer(rng: random.Random) -> str:
    paras = [_paragraph(rng) for _ in range(rng.randint(3, 8))]
    roll = rng.random()
    if roll < 0.10:
        paras[-1] = paras[-1].rstrip(".") + " and then"  # looks cut off: no final punctuation
    elif roll < 0.15:
        paras.append(paras[0])  # a looping model: every 10-gram of paragraph 1 repeats
    elif roll < 0.20:
        paras.insert(0, "Here is the revised version you asked for:")  # caught by the stop words
    return "\n\n".join(paras)


def _qa(ask: str, rng: random.Random, *, short: bool) -> str:
    passage = ask.split("Passage:\n", 1)[-1].split("\n\nReply in exactly", 1)[0]
    words = passage.split() or ["nothing"]
    start = rng.randrange(max(1, len(words) - 6))
    topic = " ".join(words[start : start + 3])
    answer = (
        " ".join(words[start : start + 4]) if short else " ".join(words[start : start + 20]).rstrip(".") + "."
    )
    return f"Question: What does the passage say about {topic}?\nAnswer: {answer}"
