"""Prompts rendered on the client: the transformers backend, and the OpenAI backend's
`completions` prefill mode.

`llama3` is mixcraft's one Llama-3 layout (`mixcraft.core.chat.llama3_prompt`), the same layout
the build's chat reader tokenizes training samples with, so prompts and training data agree token
for token. Anything else is a Jinja file, rendered the way transformers renders chat templates
(sandboxed, trim_blocks, lstrip_blocks), so a template copied out of a model's
tokenizer_config.json works unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mixcraft.core.chat import LLAMA3_BOS, llama3_prompt
from mixcraft.errors import UserError
from mixcraft.synth.backends import Message

Renderer = Callable[[list[Message], str], str]  # (messages, prefill) -> prompt text


def prompt_renderer(template: str) -> Renderer:
    """`llama3` or the path of a Jinja chat template, as a function of (messages, prefill)."""
    if template == "llama3":
        return lambda messages, prefill: llama3_prompt(messages, prefill=prefill)
    path = Path(template)
    if not path.is_file():
        raise UserError(f"chat_template {template}: no such file; write `llama3` or the path of a Jinja "
                        "chat template (relative to the config file)")
    text = path.read_text(encoding="utf-8")
    return lambda messages, prefill: render_jinja(text, messages, prefill=prefill)


def render_jinja(template: str, messages: list[Message], *, prefill: str = "", bos_token: str = LLAMA3_BOS) -> str:
    """The prompt a Jinja chat template gives for `messages`, ending in an open assistant turn
    that starts with `prefill`: the header comes from the template (add_generation_prompt) and
    the prefill is appended verbatim, which is how vLLM's `continue_final_message` behaves too."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    text = env.from_string(template).render(messages=messages, add_generation_prompt=True,
                                            bos_token=bos_token, eos_token="")
    return text + prefill
