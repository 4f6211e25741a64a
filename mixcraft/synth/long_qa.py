"""Long-document QA, self-instructed as in Llama 2 Long (Xiong et al. 2023, arXiv 2309.16039, §4).

For each long document: cut it into chunks, pick one chunk, have a chat model write a QA pair
about it (a long-answer or a short-answer prompt), keep the pair only if the model, asked again,
judges it answerable from the chunk and correct (self-critique), then emit a training sample
whose input is the whole document (truncated to fit the training context) plus the question,
and whose target is the answer. Llama 2 Long trains with the LM loss on the long input too, and
reports that it helps (QuALITY 77.3 with it, 59.3 without), so `loss_on_input` is on by default:
those samples carry `"loss_on_input": true` and the build's chat reader counts the document.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mixcraft.errors import UserError
from mixcraft.synth import prompts
from mixcraft.synth.backends import Backend, SamplingParams
from mixcraft.synth.chatjsonl import chat_sample
from mixcraft.synth.config import LongQAConfig
from mixcraft.synth.journal import (
    Journal,
    ensure_same_settings,
    holding_run_folder,
    write_json_atomic,
    write_jsonl_atomic,
)
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


def list_input_files(inputs: list[Path]) -> list[Path]:
    """The .txt and .jsonl files named, or found (recursively, sorted) in the folders named."""
    files: list[Path] = []
    for path in map(Path, inputs):
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".txt", ".jsonl"))
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"long_qa.inputs: {path}: no such file or folder")
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
                        f"{path}:{lineno}: no string field '{text_field}' (see long_qa.text_field)",
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
    task, tasks = cfg.task, []
    for doc in docs:
        if count_words(doc.text) < task.min_doc_words:
            skips["too_short"] += 1
            continue
        text = truncate_words(doc.text, task.max_doc_words)
        for j in range(task.pairs_per_doc):
            key = f"{doc.key}-q{j}"
            style = task.answer_style if task.answer_style in STYLES else STYLES[request_seed(cfg.seed, key) % 2]
            tasks.append((key, {"doc_id": doc.doc_id, "text": text, "style": style}))
    return tasks


async def ask_qa(
    chunk: str, style: str, backend: Backend, params: SamplingParams
) -> tuple[tuple[str, str] | None, str | None]:
    """One QA pair about `chunk` that passed self-critique, or (None, rejection reason)."""
    template = prompts.QA_SHORT if style == "short" else prompts.QA_NORMAL
    qa = prompts.parse_qa((await backend.chat(prompts.user(template.format(chunk=chunk)), params)).text)
    if qa is None:
        return None, "unparseable_qa"
    question, answer = qa
    if style == "short" and count_words(answer) > SHORT_ANSWER_MAX_WORDS:
        return None, "short_answer_too_long"
    critique = prompts.CRITIQUE.format(chunk=chunk, question=question, answer=answer)
    verdict = prompts.parse_verdict((await backend.chat(prompts.user(critique), params)).text)
    if verdict is None:
        return None, "unclear_verdict"
    return (qa, None) if verdict else (None, "failed_self_critique")


def _qa_work(cfg: LongQAConfig, backend: Backend):
    async def work(key: str, task: dict[str, Any]) -> dict[str, Any]:
        chunks = chunk_words(task["text"], cfg.task.chunk_words)
        reasons: Counter = Counter()
        for attempt in range(cfg.task.max_attempts):
            index = random.Random(f"{cfg.seed}/{key}/{attempt}").randrange(len(chunks))
            params = cfg.sampling.with_seed(request_seed(cfg.seed, key, attempt))
            qa, reason = await ask_qa(chunks[index], task["style"], backend, params)
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
            "attempts": cfg.task.max_attempts,
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
    if not cfg.task.inputs:
        raise UserError("long_qa.inputs: no input given; list .txt/.jsonl files or folders (or pass --input)")
    docs = read_documents(list(cfg.task.inputs), cfg.task.text_field, skips)
    tasks = qa_tasks(cfg, docs, skips)
    if not tasks:
        raise UserError(
            f"long_qa.inputs: no usable documents in {', '.join(map(str, cfg.task.inputs))} ({len(docs)} "
            f"read, skipped {dict(skips) or 'none'}); lower long_qa.min_doc_words or check long_qa.text_field"
        )
    return tasks, len(docs), skips


def settings(cfg: LongQAConfig) -> dict[str, Any]:
    """What a resumed run must share with the run that started it (inputs may grow between runs)."""
    task = {k: v for k, v in asdict(cfg.task).items() if k not in ("inputs", "loss_on_input")}
    return {"seed": cfg.seed, "sampling": asdict(cfg.sampling), "long_qa": task}


async def run_long_qa(cfg: LongQAConfig, backend: Backend, opts: RunOptions | None = None,
                      loaded=None) -> dict[str, Any]:
    """Generate (or resume) QA samples; writes OUT/long_qa.jsonl and OUT/summary.json."""
    out = Path(cfg.out)
    with holding_run_folder(out):
        ensure_same_settings(out / "settings.json", settings(cfg))
        tasks, n_docs, skips = loaded or load_tasks(cfg)
        with Journal(out / "qa.jsonl") as journal:
            report = await run_stage("long-qa", tasks, _qa_work(cfg, backend), journal, backend.usage, opts or cfg.run)
            if not report.complete:
                raise BudgetReached(f"long-qa: {report.ok + report.rejected}/{report.total} tasks done")
            records = journal.records
        rows = [training_sample(key, task["text"], records[key], loss_on_input=cfg.task.loss_on_input)
                for key, task in sorted(tasks, key=lambda t: t[0]) if records.get(key, {}).get("status") == "ok"]
        write_jsonl_atomic(out / "long_qa.jsonl", rows)
        summary = {"documents_read": n_docs, "skipped": dict(skips), "samples": len(rows),
                   "stage": report.as_dict(), "usage": backend.usage.as_dict(), "output": str(out / "long_qa.jsonl")}
        write_json_atomic(out / "summary.json", summary)
        return summary
