"""The chat JSONL both generators emit, one training sample per line:

    {"id": str,
     "messages": [{"role": "system" | "user" | "assistant", "content": str}, ...],
     "meta": {...},
     "loss_on_input": true}            # optional; long-document QA only

OpenAI message format. mixcraft's chat reader renders it with the Llama-3 chat template into tokens
plus a loss mask (1 on assistant tokens, and on user tokens too when `loss_on_input` is true), and
the packer writes the mask as the MDS `mask` column.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROLES = ("system", "user", "assistant")


def chat_sample(
    sample_id: str, messages: list[dict[str, str]], meta: dict[str, Any], *, loss_on_input: bool = False
) -> dict[str, Any]:
    sample: dict[str, Any] = {"id": sample_id, "messages": messages, "meta": meta}
    if loss_on_input:
        sample["loss_on_input"] = True
    problems = sample_problems(sample)
    if problems:  # a bug in a generator, not a user mistake: fail loudly before writing
        raise ValueError(f"sample {sample_id}: {'; '.join(problems)}")
    return sample


def sample_problems(sample: Any) -> list[str]:
    """What is wrong with one parsed line, as short phrases (empty when it is valid)."""
    if not isinstance(sample, dict):
        return ["not a JSON object"]
    problems = []
    if not isinstance(sample.get("id"), str) or not sample.get("id"):
        problems.append("id must be a non-empty string")
    if not isinstance(sample.get("meta", {}), dict):
        problems.append("meta must be an object")
    if "loss_on_input" in sample and not isinstance(sample["loss_on_input"], bool):
        problems.append("loss_on_input must be true or false")
    messages = sample.get("messages")
    if not isinstance(messages, list) or not messages:
        return [*problems, "messages must be a non-empty list"]
    for i, msg in enumerate(messages):
        if (
            not isinstance(msg, dict)
            or msg.get("role") not in ROLES
            or not isinstance(msg.get("content"), str)
        ):
            problems.append(f"messages[{i}] needs role in {ROLES} and string content")
    if isinstance(messages[-1], dict) and messages[-1].get("role") != "assistant":
        problems.append("the last message must be the assistant's (it is what the loss trains)")
    return problems


def check_chat_file(path: Path) -> list[str]:
    """Problems in a chat JSONL file as 'path:line: problem' strings (empty when valid)."""
    found = []
    seen: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            try:
                sample = json.loads(line)
            except json.JSONDecodeError as exc:
                found.append(f"{path}:{lineno}: not JSON ({exc.msg})")
                continue
            found += [f"{path}:{lineno}: {p}" for p in sample_problems(sample)]
            sid = sample.get("id") if isinstance(sample, dict) else None
            if sid in seen:
                found.append(f"{path}:{lineno}: duplicate id {sid!r}")
            seen.add(sid)
    return found
