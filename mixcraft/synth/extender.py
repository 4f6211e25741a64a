"""Self-Lengthen's Extender (stage 3 of a round) and the two SFT files a round writes.

As in the reference's step2_ext_responses.py: each pass enriches the first half of the current
best text, keeps 2/3 of the enriched paragraphs (the tail of an enrichment tends to wrap up,
which would end the text early), prefills them as the assistant's answer to "enrich the whole
draft", and lets the Extender continue. A pass rejected by the filters, or no longer than the
best, is discarded; the result counts only above `min_growth` x the original's words.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from mixcraft.synth import prompts
from mixcraft.synth.backends import Backend, SamplingParams, Usage
from mixcraft.synth.chatjsonl import chat_sample
from mixcraft.synth.config import SelfLengthenConfig
from mixcraft.synth.journal import write_jsonl_atomic
from mixcraft.synth.runner import request_seed
from mixcraft.synth.textops import ResponseFilters, check_response, count_words, split_paragraphs

DRAFT_KEEP_P = 0.8  # mk_data.py keeps each line of the original answer with p = 0.8


async def extend_response(instruction: str, response: str, extender: Backend, *, passes: int, min_growth: float,
                          params: SamplingParams, filters: ResponseFilters = ResponseFilters(),
                          seed_parts: tuple = ()) -> tuple[str | None, Counter]:
    """Lengthen `response`; the result, or None unless it has more than `min_growth` x the words."""
    reasons: Counter = Counter()
    best = response
    for p in range(passes):
        paras, sep = split_paragraphs(best)
        first_half = sep.join(paras[: max(1, len(paras) // 2)])
        p_params = params.with_seed(request_seed(*seed_parts, p))
        ask_half = prompts.user(prompts.EXTEND.format(instruction=instruction, response=first_half))
        enriched, e_sep = split_paragraphs((await extender.chat(ask_half, p_params)).text.strip())
        prefill = e_sep.join(enriched[: len(enriched) * 2 // 3])
        ask_all = prompts.user(prompts.EXTEND.format(instruction=instruction, response=best))
        candidate = (prefill + (await extender.complete(ask_all, prefill, p_params)).text).strip()
        reason = check_response(candidate, filters)
        if reason is None and count_words(candidate) <= count_words(best):
            reason = "not_longer"
        if reason is not None:
            reasons[reason] += 1
            continue
        best = candidate
    if count_words(best) > min_growth * count_words(response):
        return best, reasons
    reasons["growth_below_min"] += 1
    return None, reasons


def extend_work(cfg: SelfLengthenConfig, extender: Backend):
    task = cfg.task

    async def work(key: str, answer: dict[str, Any]) -> dict[str, Any]:
        reasons: Counter = Counter()
        for attempt in range(task.extend_attempts):
            text, why = await extend_response(
                answer["instruction"], answer["response"], extender, passes=task.extend_passes,
                min_growth=task.min_growth, params=cfg.sampling, filters=cfg.filters,
                seed_parts=(cfg.seed, key, attempt))
            reasons.update(why)
            if text is not None:
                return {"status": "ok", "answer_key": answer["key"], "instruction": answer["instruction"],
                        "initial": answer["response"], "extended": text, "n_words_initial": answer["n_words"],
                        "n_words": count_words(text), "attempts": attempt + 1, "reasons": dict(reasons)}
        return {"status": "rejected", "answer_key": answer["key"], "attempts": task.extend_attempts,
                "reasons": dict(reasons)}

    return work


def degrade_draft(text: str, rng: random.Random) -> str:
    """The Extender's training input: the original answer with each line kept with p = 0.8, as in
    the reference's data maker, so the Extender learns to fill gaps instead of copying."""
    lines = text.split("\n")
    kept = [line for line in lines if rng.random() < DRAFT_KEEP_P]
    return "\n".join(kept) if any(line.strip() for line in kept) else lines[0]


def write_outputs(cfg: SelfLengthenConfig, kept, answers, kept_answers, reports, usage: Usage) -> dict[str, Any]:
    """gen_sft.jsonl and ext_sft.jsonl (chat JSONL, one sample per kept extension) and the summary."""
    gen_rows, ext_rows = [], []
    for rec in kept:
        meta = {"generator": "self-lengthen", "round": cfg.task.round, "key": rec["key"],
                "n_words": rec["n_words"], "n_words_initial": rec["n_words_initial"]}
        answer = [{"role": "assistant", "content": rec["extended"]}]
        gen_rows.append(chat_sample(f"sl-gen-{rec['key']}", prompts.user(rec["instruction"]) + answer, meta))
        draft = degrade_draft(rec["initial"], random.Random(f"{cfg.seed}/{rec['key']}/draft"))
        ask = prompts.EXTEND.format(instruction=rec["instruction"], response=draft)
        ext_rows.append(chat_sample(f"sl-ext-{rec['key']}", prompts.user(ask) + answer, meta))
    write_jsonl_atomic(cfg.round_dir / "gen_sft.jsonl", gen_rows)
    write_jsonl_atomic(cfg.round_dir / "ext_sft.jsonl", ext_rows)
    mean = lambda xs: round(sum(xs) / len(xs), 1) if xs else 0.0  # noqa: E731
    return {
        "round": cfg.task.round,
        "samples": len(gen_rows),
        "mean_words": {
            "initial_all": mean([a["n_words"] for a in answers]),
            "initial_kept": mean([a["n_words"] for a in kept_answers]),
            "extended_kept": mean([r["n_words"] for r in kept]),
        },
        "stages": reports,
        "usage": usage.as_dict(),  # the three roles share one Usage
        "outputs": {
            "generator_sft": str(cfg.round_dir / "gen_sft.jsonl"),
            "extender_sft": str(cfg.round_dir / "ext_sft.jsonl"),
        },
    }
