"""Chat templates for the two places that render prompts on the client side: the transformers
backend (when the tokenizer has no template) and the OpenAI backend's `completions` prefill mode.

Templates are Jinja, rendered the way transformers renders them (sandboxed, trim_blocks), so a
template file copied from a model's tokenizer_config.json works unchanged.
"""

from __future__ import annotations

from pathlib import Path

from mixcraft.errors import UserError

# Llama-3 Instruct's layout without its date-stamped default system prompt: the layout mixcraft's
# chat reader renders training samples with, so prompts and training data agree token for token.
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim }}"
    "{% if not (loop.last and continue_final_message) %}{{ '<|eot_id|>' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

BUILTIN_TEMPLATES = {"llama3": LLAMA3_CHAT_TEMPLATE}
LLAMA3_BOS = "<|begin_of_text|>"


def load_chat_template(name_or_path: str) -> str:
    """A built-in template by name (`llama3`) or the text of a Jinja file."""
    if name_or_path in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        raise UserError(
            f"--chat-template {name_or_path}: not a built-in template ({', '.join(BUILTIN_TEMPLATES)}) "
            "and no such file; pass 'llama3' or the path of a Jinja chat template"
        )
    return path.read_text(encoding="utf-8")


def render_chat(
    template: str,
    messages: list[dict[str, str]],
    *,
    prefill: str | None = None,
    bos_token: str = LLAMA3_BOS,
) -> str:
    """The prompt string for `messages`, ending in an open assistant turn that starts with `prefill`.

    The assistant header comes from the template itself (add_generation_prompt), and the prefill is
    appended verbatim after it, which is how vLLM's `continue_final_message` behaves too.
    """
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    text = env.from_string(template).render(
        messages=messages,
        add_generation_prompt=True,
        continue_final_message=False,
        bos_token=bos_token,
        eos_token="",
    )
    return text + (prefill or "")
