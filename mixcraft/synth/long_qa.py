"""Long-document QA, self-instructed as in Llama 2 Long (Xiong et al. 2023, arXiv 2309.16039, §4).

For each long document: cut it into chunks, pick one chunk, have a chat model write a QA pair
about it (a long-answer or a short-answer prompt), keep the pair only if the model, asked again,
judges it answerable from the chunk and correct (self-critique), then emit a training sample
whose input is the whole document (truncated to fit the training context) plus the question,
and whose target is the answer. Llama 2 Long reports that also taking the LM loss on the long
input helps (QuALITY 77.3 with it, 59.3 without): `loss_on_input` marks those samples.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mixcraft.errors import UserError
from mixcraft.synth import prompts
from mixcraft.synth.backends import Backend, SamplingParams
from mixcraft.synth.chatjsonl import chat_sample
from mixcraft.synth.journal import Journal, ensure_same_settings, write_json_atomic, write_jsonl_atomic
from mixcraft.synth.runner import BudgetReached, RunOptions, console, request_seed, run_stage
from mixcraft.synth.textops import count_words

STYLES = ("normal", "short")
SHORT_ANSWER_MAX_WORDS = 10  # the prompt asks for at most five; allow some slack before rejecting
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class LongDoc:
    doc_id: str  # "file" or "file:line"
    text: str

    @property
    def key(self) -> str:
        """Content-addressed, so resuming after inputs are added or reordered still matches."""
        return hashlib.sha1(f"{self.doc_id}\0{self.text}".encode()).hexdigest()[:16]


@dataclass
class LongQAConfig:
    out_dir: Path
    inputs: list[Path]
    text_field: str = "text"
    chunk_words: int = 1500
    min_doc_words: int = 2000
    max_doc_words: int = 24000  # ~32K Llama-3 tokens of English prose, Llama 2 Long's context
    pairs_per_doc: int = 2
    answer_style: str = "both"  # normal | short | both
    loss_on_input: bool = False
    max_attempts: int = 5
    seed: int = 0
    params: SamplingParams = field(default_factory=lambda: SamplingParams(max_tokens=512))


def list_input_files(inputs: list[Path]) -> list[Path]:
    """The .txt and .jsonl files named, or found (recursively, sorted) in the folders named."""
    files: list[Path] = []
    for path in inputs:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".txt", ".jsonl"))
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"--input {path}: no such file or folder")
    return files


def read_documents(inputs: list[Path], text_field: str, skips: Counter) -> list[LongDoc]:
    """Documents from .txt files (one each) and .jsonl files (one per line, `text_field`).

    Lines without a usable text are skipped and counted in `skips` (bad_json, missing_field,
    empty_text); the first few are named on stderr so the user can look.
    """
    docs: list[LongDoc] = []
    for path in list_input_files(inputs):
        if path.suffix != ".jsonl":
            text = path.read_text(encoding="utf-8", errors="replace")
            if text.strip():
                docs.append(LongDoc(str(path), text))
            else:
                _skip(skips, "empty_text", f"{path}")
            continue
        with open(path, encoding="utf-8", errors="replace") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    _skip(skips, "bad_json", f"{path}:{lineno}: not JSON")
                    continue
                text = obj.get(text_field) if isinstance(obj, dict) else None
                if not isinstance(text, str):
                    _skip(
                        skips,
                        "missing_field",
                        f"{path}:{lineno}: no string field '{text_field}' (see --text-field)",
                    )
                elif not text.strip():
                    _skip(skips, "empty_text", f"{path}:{lineno}: empty '{text_field}'")
                else:
                    docs.append(LongDoc(f"{path}:{lineno}", text))
    return docs


def _skip(skips: Counter, reason: str, where: str) -> None:
    skips[reason] += 1
    if skips[reason] <= 3:
        console.print(f"[yellow]skipped[/] {where} (counted as {reason})")


def truncate_words(text: str, max_words: int) -> str:
    """The text up to the end of its `max_words`-th word, layout preserved."""
    ends = [m.end() for m in _WORD.finditer(text)]
    return text if len(ends) <= max_words else text[: ends[max_words - 1]]


def chunk_words(text: str, n_words: int) -> list[str]:
    """Consecutive chunks of `n_words` words (the last may be shorter), sliced from the original
    text so that line breaks and spacing survive."""
    spans = [m.span() for m in _WORD.finditer(text)]
    return [
        text[spans[i][0] : spans[min(i + n_words, len(spans)) - 1][1]] for i in range(0, len(spans), n_words)
    ]


def qa_tasks(cfg: LongQAConfig, docs: list[LongDoc], skips: Counter) -> list[tuple[str, Any]]:
    tasks = []
    for doc in docs:
        if count_words(doc.text) < cfg.min_doc_words:
            skips["too_short"] += 1
            continue
        text = truncate_words(doc.text, cfg.max_doc_words)
        for j in range(cfg.pairs_per_doc):
            key = f"{doc.key}-q{j}"
            style = (
                cfg.answer_style if cfg.answer_style in STYLES else STYLES[request_seed(cfg.seed, key) % 2]
            )
            tasks.append((key, {"doc_id": doc.doc_id, "text": text, "style": style}))
    return tasks


def ask_qa(
    chunk: str, style: str, backend: Backend, params: SamplingParams
) -> tuple[tuple[str, str] | None, str | None]:
    """One QA pair about `chunk` that passed self-critique, or (None, rejection reason)."""
    template = prompts.QA_SHORT if style == "short" else prompts.QA_NORMAL
    qa = prompts.parse_qa(backend.chat(prompts.user(template.format(chunk=chunk)), params).text)
    if qa is None:
        return None, "unparseable_qa"
    question, answer = qa
    if style == "short" and count_words(answer) > SHORT_ANSWER_MAX_WORDS:
        return None, "short_answer_too_long"
    critique = prompts.CRITIQUE.format(chunk=chunk, question=question, answer=answer)
    verdict = prompts.parse_verdict(backend.chat(prompts.user(critique), params).text)
    if verdict is None:
        return None, "unclear_verdict"
    return (qa, None) if verdict else (None, "failed_self_critique")


def _qa_work(cfg: LongQAConfig, backend: Backend):
    def work(key: str, task: dict[str, Any]) -> dict[str, Any]:
        chunks = chunk_words(task["text"], cfg.chunk_words)
        reasons: Counter = Counter()
        for attempt in range(cfg.max_attempts):
            index = random.Random(f"{cfg.seed}/{key}/{attempt}").randrange(len(chunks))
            params = cfg.params.with_seed(request_seed(cfg.seed, key, attempt))
            qa, reason = ask_qa(chunks[index], task["style"], backend, params)
            if qa is not None:
                return {
                    "status": "ok",
                    "doc_id": task["doc_id"],
                    "chunk_index": index,
                    "n_chunks": len(chunks),
                    "style": task["style"],
                    "question": qa[0],
                    "answer": qa[1],
                    "attempts": attempt + 1,
                    "reasons": dict(reasons),
                }
            reasons[reason] += 1
        return {
            "status": "rejected",
            "doc_id": task["doc_id"],
            "attempts": cfg.max_attempts,
            "reasons": dict(reasons),
        }

    return work


def training_sample(
    key: str, document: str, record: dict[str, Any], *, loss_on_input: bool
) -> dict[str, Any]:
    """Document + question -> answer, as one user turn and one assistant turn."""
    question = record["question"]
    if record["style"] == "short":
        question += "\n" + prompts.SHORT_ANSWER_HINT
    meta = {k: record[k] for k in ("doc_id", "chunk_index", "n_chunks", "style")}
    meta.update(generator="long-qa", n_doc_words=count_words(document))
    messages = prompts.user(f"{document}\n\n{question}") + [
        {"role": "assistant", "content": record["answer"]}
    ]
    return chat_sample(f"lqa-{key}", messages, meta, loss_on_input=loss_on_input)


def load_tasks(cfg: LongQAConfig) -> tuple[list[tuple[str, Any]], int, Counter]:
    """(tasks, documents read, skips); a UserError when no document is usable. Runs before any
    model is loaded, so input mistakes surface in a second."""
    skips: Counter = Counter()
    docs = read_documents(cfg.inputs, cfg.text_field, skips)
    tasks = qa_tasks(cfg, docs, skips)
    if not tasks:
        raise UserError(
            f"--input: no usable documents in {', '.join(map(str, cfg.inputs))} ({len(docs)} read, "
            f"skipped {dict(skips) or 'none'}); lower --min-doc-words or check --text-field"
        )
    return tasks, len(docs), skips


def run_long_qa(cfg: LongQAConfig, backend: Backend, opts: RunOptions, loaded=None) -> dict[str, Any]:
    """Generate (or resume) QA samples; writes OUT/long_qa.jsonl and OUT/summary.json."""
    kept_settings = {k: v for k, v in asdict(cfg).items() if k not in ("out_dir", "inputs", "loss_on_input")}
    ensure_same_settings(cfg.out_dir / "settings.json", kept_settings)  # inputs may grow between runs
    tasks, n_docs, skips = loaded or load_tasks(cfg)
    with Journal(cfg.out_dir / "qa.jsonl") as journal:
        report = run_stage("long-qa", tasks, _qa_work(cfg, backend), journal, backend.usage, opts)
        if not report.complete:
            raise BudgetReached(f"long-qa: {report.ok + report.rejected}/{report.total} tasks done")
        records = journal.records
    rows = [
        training_sample(key, task["text"], records[key], loss_on_input=cfg.loss_on_input)
        for key, task in sorted(tasks, key=lambda t: t[0])
        if records.get(key, {}).get("status") == "ok"
    ]
    write_jsonl_atomic(cfg.out_dir / "long_qa.jsonl", rows)
    summary = {
        "documents_read": n_docs,
        "skipped": dict(skips),
        "samples": len(rows),
        "stage": report.as_dict(),
        "usage": backend.usage.as_dict(),
        "output": str(cfg.out_dir / "long_qa.jsonl"),
    }
    write_json_atomic(cfg.out_dir / "summary.json", summary)
    return summary
