"""Self-Lengthen (Quan et al. 2024, arXiv 2410.23933): one round of the long-output data loop.

Stages of round k, each a resumable journal under OUT/round_k/:
1. instructions  few-shot expansion from the seeds (and earlier rounds' instructions) by
                 prefilling "Instruction 1: a / Instruction 2: b / Instruction 3:", then a yes/no
                 judge keeps those suited to long answers;
2. initial       the Generator answers each instruction (2 answers each); answers must end with
                 punctuation and repeat no 10-word n-gram; then the length-biased keep rule;
3. extended      the Extender lengthens each kept answer (2 tries each, up to 3 passes per try):
                 enrich the first half, keep 2/3 of the enriched paragraphs, prefill them and let
                 the Extender continue; accepted only if > 1.2x the original's words; keep rule.
4. outputs       gen_sft.jsonl (instruction -> extended answer) trains the next Generator,
                 ext_sft.jsonl (draft -> extended answer) the next Extender. See ROUNDS.md.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mixcraft.errors import UserError
from mixcraft.synth import prompts
from mixcraft.synth.backends import Backend, SamplingParams
from mixcraft.synth.chatjsonl import chat_sample
from mixcraft.synth.journal import Journal, ensure_same_settings, write_json_atomic, write_jsonl_atomic
from mixcraft.synth.runner import BudgetReached, RunOptions, StageReport, request_seed, run_stage
from mixcraft.synth.textops import check_response, count_words, length_biased_keep, split_paragraphs

DEFAULT_SEEDS = Path(__file__).resolve().parents[2] / "recipes" / "synth" / "seed_instructions.jsonl"
# Self-Lengthen keeps an expanded instruction only if it has more than 3 and fewer than 500 words.
MIN_INSTRUCTION_WORDS, MAX_INSTRUCTION_WORDS = 3, 500


@dataclass
class Roles:
    """Who does what. Round 1 uses one model for all three; later rounds swap in the trained ones."""

    base: Backend  # instruction expansion and the suitability judge
    generator: Backend
    extender: Backend


@dataclass
class SelfLengthenConfig:
    out_dir: Path
    round: int = 1
    seeds_path: Path = DEFAULT_SEEDS
    n_instructions: int = 100  # 0: use the seed instructions as they are
    responses_per_instruction: int = 2
    extensions_per_response: int = 2
    max_attempts: int = 10
    extend_passes: int = 3
    min_growth: float = 1.2
    seed: int = 0
    params: SamplingParams = field(default_factory=SamplingParams)
    short_params: SamplingParams = field(default_factory=lambda: SamplingParams(max_tokens=256))

    @property
    def round_dir(self) -> Path:
        return self.out_dir / f"round_{self.round}"


def settings(cfg: SelfLengthenConfig) -> dict[str, Any]:
    """What a resumed round must share with the run that started it. --n-instructions may grow:
    the extra instructions are added as new tasks."""
    d = asdict(cfg)
    for key in ("out_dir", "round", "n_instructions", "seeds_path"):
        d.pop(key)
    d["seeds_sha1"] = (
        hashlib.sha1(cfg.seeds_path.read_bytes()).hexdigest() if cfg.seeds_path.is_file() else None
    )
    return d


def run_round(cfg: SelfLengthenConfig, roles: Roles, opts: RunOptions) -> dict[str, Any]:
    """Run (or resume) one round; returns its summary, also written to round_k/summary.json."""
    ensure_same_settings(cfg.round_dir / "settings.json", settings(cfg))
    reports: list[StageReport | dict] = []
    instructions = _stage(
        cfg, "instructions", _instruction_tasks(cfg), _expand_work(cfg, roles), roles, opts, reports
    )
    answers = _stage(
        cfg, "initial", _answer_tasks(cfg, instructions), _answer_work(cfg, roles), roles, opts, reports
    )
    kept_answers = _keep_longest(answers, "n_words", cfg.seed, cfg.round, "initial")
    tasks = [(f"{a['key']}-e{j}", a) for a in kept_answers for j in range(cfg.extensions_per_response)]
    extended = _stage(cfg, "extended", tasks, _extend_work(cfg, roles), roles, opts, reports)
    kept = _keep_longest(extended, "n_words", cfg.seed, cfg.round, "extended")
    summary = _write_outputs(cfg, kept, answers, kept_answers, reports, roles)
    write_json_atomic(cfg.round_dir / "summary.json", summary)
    return summary


def _stage(cfg, name, tasks, work, roles: Roles, opts: RunOptions, reports: list) -> list[dict[str, Any]]:
    """Run one stage unless its journal says it finished; the ok records, sorted by key."""
    digest = hashlib.sha1("\n".join(sorted(key for key, _ in tasks)).encode()).hexdigest()
    with Journal(cfg.round_dir / f"{name}.jsonl") as journal:
        done = journal.completed()
        if done is None or done.get("tasks_sha1") != digest:  # new tasks (more instructions): run them
            report = run_stage(f"round {cfg.round} {name}", tasks, work, journal, roles.base.usage, opts)
            if not report.complete:
                raise BudgetReached(f"{name}: {report.ok + report.rejected}/{report.total} tasks done")
            done = {**report.as_dict(), "tasks_sha1": digest}
            journal.mark_complete(done)
        reports.append(done)
        wanted = {key for key, _ in tasks}
        return [r for k, r in sorted(journal.records.items()) if k in wanted and r.get("status") == "ok"]


def _keep_longest(
    records: list[dict[str, Any]], length_key: str, seed: int, rnd: int, what: str
) -> list[dict]:
    rng = random.Random(f"{seed}/round{rnd}/keep/{what}")
    keep = length_biased_keep([r[length_key] for r in records], rng)
    return [r for r, k in zip(records, keep, strict=True) if k]


def load_seed_instructions(path: Path) -> list[str]:
    """Seeds from a .jsonl file (field "instruction" or "prompt") or a .txt file (one per line)."""
    if not path.is_file():
        raise UserError(f"--seeds {path}: no such file; pass a .jsonl with an 'instruction' field or a .txt")
    seeds = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if path.suffix != ".jsonl":
            seeds.append(line.strip())
            continue
        try:
            obj = json.loads(line)
            seeds.append(str(obj.get("instruction") or obj["prompt"]).strip())
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError):
            raise UserError(f"{path}:{lineno}: expected a JSON object with an 'instruction' string") from None
    if len(seeds) < 2:
        raise UserError(f"{path}: {len(seeds)} seed instruction(s); few-shot expansion needs at least 2")
    return seeds


def _instruction_pool(cfg: SelfLengthenConfig) -> list[str]:
    """Seeds plus the instructions of earlier rounds (Self-Lengthen grows the pool as it goes)."""
    pool = load_seed_instructions(cfg.seeds_path)
    for earlier in range(1, cfg.round):
        path = cfg.out_dir / f"round_{earlier}" / "instructions.jsonl"
        if path.exists():
            with Journal(path) as journal:
                pool += [
                    r["instruction"] for _, r in sorted(journal.records.items()) if r.get("status") == "ok"
                ]
    return pool


def _instruction_tasks(cfg: SelfLengthenConfig) -> list[tuple[str, Any]]:
    pool = _instruction_pool(cfg)
    if cfg.n_instructions == 0:
        return [(f"r{cfg.round}-seed{i:06d}", {"given": text}) for i, text in enumerate(pool)]
    return [(f"r{cfg.round}-i{i:06d}", {"pool": pool}) for i in range(cfg.n_instructions)]


def _expand_work(cfg: SelfLengthenConfig, roles: Roles):
    def work(key: str, payload: dict[str, Any]) -> dict[str, Any]:
        if "given" in payload:
            return {"status": "ok", "instruction": payload["given"], "attempts": 0, "reasons": {}}
        reasons: Counter = Counter()
        for attempt in range(cfg.max_attempts):
            rng = random.Random(f"{cfg.seed}/{key}/{attempt}")
            examples = rng.sample(payload["pool"], 2)
            params = cfg.short_params.with_seed(request_seed(cfg.seed, key, attempt))
            reply = roles.base.complete(
                prompts.user(prompts.EXPAND_REQUEST), prompts.expand_prefill(examples), params
            )
            text = prompts.parse_expansion(reply.text)
            if not MIN_INSTRUCTION_WORDS < count_words(text) < MAX_INSTRUCTION_WORDS:
                reasons["instruction_length"] += 1
                continue
            verdict = prompts.parse_verdict(
                roles.base.chat(prompts.user(prompts.JUDGE.format(instruction=text)), params).text
            )
            if verdict:
                return {
                    "status": "ok",
                    "instruction": text,
                    "attempts": attempt + 1,
                    "reasons": dict(reasons),
                }
            reasons["judged_unsuitable" if verdict is False else "unclear_verdict"] += 1
        return {"status": "rejected", "attempts": cfg.max_attempts, "reasons": dict(reasons)}

    return work


def _answer_tasks(cfg: SelfLengthenConfig, instructions: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(f"{r['key']}-a{j}", r) for r in instructions for j in range(cfg.responses_per_instruction)]


def _answer_work(cfg: SelfLengthenConfig, roles: Roles):
    def work(key: str, inst: dict[str, Any]) -> dict[str, Any]:
        reasons: Counter = Counter()
        for attempt in range(cfg.max_attempts):
            params = cfg.params.with_seed(request_seed(cfg.seed, key, attempt))
            reply = roles.generator.chat(prompts.user(inst["instruction"]), params)
            text = reply.text.strip()
            reason = "hit_max_tokens" if reply.finish_reason == "length" else check_response(text)
            if reason is None:
                return {
                    "status": "ok",
                    "instruction_key": inst["key"],
                    "instruction": inst["instruction"],
                    "response": text,
                    "n_words": count_words(text),
                    "attempts": attempt + 1,
                    "reasons": dict(reasons),
                }
            reasons[reason] += 1
        return {
            "status": "rejected",
            "instruction_key": inst["key"],
            "attempts": cfg.max_attempts,
            "reasons": dict(reasons),
        }

    return work


def extend_response(
    instruction: str,
    response: str,
    extender: Backend,
    *,
    passes: int,
    min_growth: float,
    params: SamplingParams,
    seed_parts: tuple = (),
) -> tuple[str | None, Counter]:
    """Lengthen `response`; the result, or None unless it has more than `min_growth` x the words.

    Each pass enriches the first half of the current best text, keeps 2/3 of the enriched
    paragraphs (the tail of an enrichment tends to wrap up, which would end the text early),
    prefills them as the assistant's answer to "enrich the whole draft", and lets the Extender
    continue. A pass that is rejected by the filters or is no longer than the best is discarded.
    """
    reasons: Counter = Counter()
    best = response
    for p in range(passes):
        paras, sep = split_paragraphs(best)
        first_half = sep.join(paras[: max(1, len(paras) // 2)])
        p_params = params.with_seed(request_seed(*seed_parts, p))
        ask_half = prompts.user(prompts.EXTEND.format(instruction=instruction, response=first_half))
        enriched, e_sep = split_paragraphs(extender.chat(ask_half, p_params).text.strip())
        prefill = e_sep.join(enriched[: len(enriched) * 2 // 3])
        ask_all = prompts.user(prompts.EXTEND.format(instruction=instruction, response=best))
        candidate = (prefill + extender.complete(ask_all, prefill, p_params).text).strip()
        reason = check_response(candidate)
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


def _extend_work(cfg: SelfLengthenConfig, roles: Roles):
    def work(key: str, answer: dict[str, Any]) -> dict[str, Any]:
        reasons: Counter = Counter()
        for attempt in range(cfg.max_attempts):
            text, why = extend_response(
                answer["instruction"],
                answer["response"],
                roles.extender,
                passes=cfg.extend_passes,
                min_growth=cfg.min_growth,
                params=cfg.params,
                seed_parts=(cfg.seed, key, attempt),
            )
            reasons.update(why)
            if text is not None:
                return {
                    "status": "ok",
                    "answer_key": answer["key"],
                    "instruction": answer["instruction"],
                    "initial": answer["response"],
                    "extended": text,
                    "n_words_initial": answer["n_words"],
                    "n_words": count_words(text),
                    "attempts": attempt + 1,
                    "reasons": dict(reasons),
                }
        return {
            "status": "rejected",
            "answer_key": answer["key"],
            "attempts": cfg.max_attempts,
            "reasons": dict(reasons),
        }

    return work


def degrade_draft(text: str, rng: random.Random) -> str:
    """The Extender's training input: the original answer with each line kept with p = 0.8, as in
    Self-Lengthen's data maker, so the Extender learns to fill gaps instead of copying."""
    lines = [line for line in text.split("\n") if line.strip()]
    kept = [line for line in lines if rng.random() < 0.8] or lines[:1]
    return "\n\n".join(kept)


def _write_outputs(cfg, kept, answers, kept_answers, reports, roles: Roles) -> dict[str, Any]:
    gen_rows, ext_rows = [], []
    for rec in kept:
        meta = {
            "generator": "self-lengthen",
            "round": cfg.round,
            "key": rec["key"],
            "n_words": rec["n_words"],
            "n_words_initial": rec["n_words_initial"],
        }
        answer = [{"role": "assistant", "content": rec["extended"]}]
        gen_rows.append(chat_sample(f"sl-gen-{rec['key']}", prompts.user(rec["instruction"]) + answer, meta))
        draft = degrade_draft(rec["initial"], random.Random(f"{cfg.seed}/{rec['key']}/draft"))
        ask = prompts.EXTEND.format(instruction=rec["instruction"], response=draft)
        ext_rows.append(chat_sample(f"sl-ext-{rec['key']}", prompts.user(ask) + answer, meta))
    write_jsonl_atomic(cfg.round_dir / "gen_sft.jsonl", gen_rows)
    write_jsonl_atomic(cfg.round_dir / "ext_sft.jsonl", ext_rows)
    mean = lambda xs: round(sum(xs) / len(xs), 1) if xs else 0.0  # noqa: E731
    return {
        "round": cfg.round,
        "samples": len(gen_rows),
        "mean_words": {
            "initial_all": mean([a["n_words"] for a in answers]),
            "initial_kept": mean([a["n_words"] for a in kept_answers]),
            "extended_kept": mean([r["n_words"] for r in kept]),
        },
        "stages": reports,
        "usage": roles.base.usage.as_dict(),  # the three roles share one Usage
        "outputs": {
            "generator_sft": str(cfg.round_dir / "gen_sft.jsonl"),
            "extender_sft": str(cfg.round_dir / "ext_sft.jsonl"),
        },
    }
