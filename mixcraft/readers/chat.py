"""Chat conversations for SFT: OpenAI `messages` or ShareGPT `conversations`, from
JSONL/Parquet files or a hub dataset. Rendering to tokens and the loss mask happens at
tokenization (mixcraft/core/chat.py), because it needs the tokenizer's special tokens.

`template: llama3` (default) renders the Llama-3 format directly; `template: tokenizer` uses
the tokenizer's own Jinja chat template (from tokenizer_config.json beside tokenizer.json, or
the file `chat_template: FILE.jinja`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from datatrove.data import Document

from mixcraft.core.chat import ChatTemplate
from mixcraft.readers.base import has_surrogates
from mixcraft.readers.text import RecordParams, RecordReader
from mixcraft.schema import RelPath

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "chatgpt": "assistant", "bing": "assistant", "bard": "assistant"}
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True, kw_only=True)
class ChatConfig(RecordParams):
    type_name: ClassVar[str] = "chat"
    messages_field: str | None = None  # default: `messages`, else `conversations`
    loss_on_input: bool = False  # also train on user and system turns (a record's own key wins)
    template: ChatTemplate = "llama3"
    chat_template: RelPath | None = None  # a Jinja file, for `template: tokenizer`

    def input_problems(self) -> list[tuple[str, str]]:
        problems = super().input_problems()
        if self.chat_template is not None and not Path(self.chat_template).is_file():
            problems.append(("chat_template", f"file {self.chat_template!r} not found"))
        return problems


def normalize_messages(record: dict[str, Any], field: str | None) -> list[dict[str, str]] | str:
    """OpenAI-style messages, or a snake_case reason why the record is not a usable chat."""
    raw = record.get(field) if field else record.get("messages", record.get("conversations"))
    if not isinstance(raw, list) or not raw:
        return "missing_messages"
    messages = []
    for m in raw:
        if not isinstance(m, dict):
            return "malformed_message"
        if "role" in m:
            role, content = m.get("role"), m.get("content")
        else:
            role, content = SHAREGPT_ROLES.get(str(m.get("from", "")).lower()), m.get("value")
        if role not in ROLES or not isinstance(content, str):
            return "malformed_message"
        if has_surrogates(content):
            return "invalid_utf8"
        messages.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in messages):
        return "no_assistant_turn"
    return messages


class ChatReader(RecordReader):
    cfg: ChatConfig

    def columns(self) -> list[str] | None:
        return None  # `messages` or `conversations`, and a record's own `loss_on_input`

    def record_docs(self, where: str, record: dict) -> Iterator[Document]:
        messages = normalize_messages(record, self.cfg.messages_field)
        if isinstance(messages, str):
            self.ledger.skip(messages, where)
            return
        self.ledger.read()
        loss_on_input = bool(record.get("loss_on_input", self.cfg.loss_on_input))
        text = "\n\n".join(m["content"] for m in messages)  # what filters and dedup look at
        template = {"template": self.cfg.template, "chat_template": self.cfg.chat_template}
        yield self.doc(text, self.record_id(record, where), where=where, messages=messages,
                       loss_on_input=loss_on_input, **template)
