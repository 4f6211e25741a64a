"""Prompts of both generators, in one place so that wording changes are reviewed together.

Self-Lengthen (Quan et al. 2024) prompts follow the roles in its released templates (few-shot
instruction expansion by prefill, a yes/no suitability judge, an "enrich, don't continue"
Extender); the long-document QA prompts follow Llama 2 Long's description (Xiong et al. 2023, §4:
a QA pair about one chunk, long- and short-answer variants, then self-critique).
"""

from __future__ import annotations

from mixcraft.synth.backends import Message

YES_NO = "Answer only yes or no."

EXPAND_REQUEST = (
    "Your task is to write user instructions that ask an assistant for a long piece of writing: an "
    "article, report, story, guide, essay or similar. Each instruction is one line and differs in "
    "topic from the others."
)

JUDGE = (
    "Is the following instruction suitable for requesting a long piece of writing (more than 2,000 "
    f"words)? {YES_NO}\n\n<instruction>\n{{instruction}}\n</instruction>"
)

EXTEND = (
    "You are an expert editor. Below are a writing instruction and a draft of the answer. Enrich "
    "the draft: expand each part with concrete details, examples and description, or add new "
    "sections, so that it carries more information. Do not continue past the end of the draft and "
    "do not repeat yourself. Make the text as long, rich and engaging as you can.\n\n"
    "Instruction: {instruction}\n\nDraft:\n\n{response}"
)

QA_FORMAT = "Reply in exactly this format:\nQuestion: <question>\nAnswer: <answer>"

QA_NORMAL = (
    "Read the passage below, taken from a longer document. Write one question that can be answered "
    "from the passage alone, and its answer in one or more complete sentences.\n\n"
    f"Passage:\n{{chunk}}\n\n{QA_FORMAT}"
)

QA_SHORT = (
    "Read the passage below, taken from a longer document. Write one question that can be answered "
    "from the passage alone, and its answer as a short phrase of at most five words.\n\n"
    f"Passage:\n{{chunk}}\n\n{QA_FORMAT}"
)

CRITIQUE = (
    "Below are a passage, a question about it and a proposed answer. Can the question be answered "
    f"from the passage, and is the answer correct and fully supported by it? {YES_NO}\n\n"
    "Passage:\n{chunk}\n\nQuestion: {question}\nAnswer: {answer}"
)

# Appended to the question in short-answer training samples, so that the trained model learns when
# a short answer is wanted instead of guessing from the question alone.
SHORT_ANSWER_HINT = "Answer with a short phrase."


def user(content: str) -> list[Message]:
    return [{"role": "user", "content": content}]


def expand_prefill(examples: list[str]) -> str:
    """The assistant turn the model continues: numbered examples, then an open "Instruction N:"."""
    lines = [f"Instruction {i + 1}: {text}" for i, text in enumerate(examples)]
    return "\n".join(lines) + f"\nInstruction {len(examples) + 1}:"


def parse_expansion(text: str) -> str:
    """The new instruction: the continuation up to its first line break."""
    return text.strip().split("\n", 1)[0].strip() if text.strip() else ""


def parse_verdict(text: str) -> bool | None:
    """True for yes, False for no, None when the reply starts with neither."""
    words = text.strip().split(None, 1)
    first = words[0].strip(".,!:;\"'*").lower() if words else ""
    return True if first == "yes" else False if first == "no" else None


def parse_qa(text: str) -> tuple[str, str] | None:
    """(question, answer) from a "Question: ... Answer: ..." reply, or None."""
    q_at, a_at = text.find("Question:"), text.find("Answer:")
    if q_at < 0 or a_at < q_at:
        return None
    question = text[q_at + len("Question:") : a_at].strip()
    answer = text[a_at + len("Answer:") :].strip().split("\n\n", 1)[0].strip()
    return (question, answer) if question and answer else None
