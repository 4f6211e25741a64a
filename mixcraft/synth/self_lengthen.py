"""Self-Lengthen (Quan et al. 2024, arXiv 2410.23933): one round of the long-output data loop.

Stages of round k, each a resumable journal under OUT/round_k/, as in the reference code
(github.com/QwenLM/Self-Lengthen, llama/step0-2 and mk_data.py):
1. instructions  few-shot expansion from two seed instructions by prefilling "Instruction 1: a /
                 Instruction 2: b / Instruction 3:" (stop at "\\nInstruction 4"), then a yes/no
                 judge keeps those suited to long answers (3 < words < 500);
2. initial       the Generator answers each instruction (2 answers each); an answer must pass
                 the filters (final punctuation, no stop word in its first 2 or last 3 lines, no
                 repeated 10-word n-gram); then the length-biased keep rule;
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
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from mixcraft.errors import UserError
from mixcraft.synth import prompts
from mixcraft.synth.backends import Backend
from mixcraft.synth.config import SelfLengthenConfig
from mixcraft.synth.extender import extend_work, write_outputs
from mixcraft.synth.journal import Journal, ensure_same_settings, holding_run_folder, write_json_atomic
from mixcraft.synth.runner import BudgetReached, RunOptions, StageReport, request_seed, run_stage
from mixcraft.synth.textops import check_response, count_words, length_biased_keep

# The reference keeps an expanded instruction only if it has more than 3 and fewer than 500 words.
MIN_INSTRUCTION_WORDS, MAX_INSTRUCTION_WORDS = 3, 500


@dataclass
class Roles:
    """Who does what. Round 1 uses one model for all three; later rounds swap in the trained ones."""

    base: Backend  # instruction expansion and the suitability judge
    generator: Backend
    extender: Backend


def settings(cfg: SelfLengthenConfig) -> dict[str, Any]:
    """What a resumed round must share with the run that started it. `n_instructions` may grow:
    the extra instructions are added as new tasks."""
    task = {k: v for k, v in asdict(cfg.task).items()
            if k not in ("round", "n_instructions", "seeds", "generator_model", "extender_model")}
    seeds = cfg.seeds_path
    return {"seed": cfg.seed, "sampling": asdict(cfg.sampling), "filters": asdict(cfg.filters),
            "self_lengthen": task,
            "seeds_sha1": hashlib.sha1(seeds.read_bytes()).hexdigest() if seeds.is_file() else None}


async def run_round(cfg: SelfLengthenConfig, roles: Roles, opts: RunOptions | None = None) -> dict[str, Any]:
    """Run (or resume) one round; returns its summary, also written to round_k/summary.json."""
    opts = opts or cfg.run
    with holding_run_folder(Path(cfg.out)):
        ensure_same_settings(cfg.round_dir / "settings.json", settings(cfg))
        reports: list[StageReport | dict] = []
        instructions = await _instructions(cfg, roles, opts, reports)
        tasks = [(f"{r['key']}-a{j}", r) for r in instructions for j in range(cfg.task.responses_per_instruction)]
        answers = await _stage(cfg, "initial", tasks, _answer_work(cfg, roles), roles, opts, reports)
        kept_answers = _keep_longest(answers, "response", cfg, "initial")
        tasks = [(f"{a['key']}-e{j}", a) for a in kept_answers for j in range(cfg.task.extensions_per_response)]
        extended = await _stage(cfg, "extended", tasks, extend_work(cfg, roles.extender), roles, opts, reports)
        kept = _keep_longest(extended, "extended", cfg, "extended")
        summary = write_outputs(cfg, kept, answers, kept_answers, reports, roles.base.usage)
        write_json_atomic(cfg.round_dir / "summary.json", summary)
        return summary


async def _stage(cfg, name, tasks, work, roles: Roles, opts: RunOptions, reports: list) -> list[dict[str, Any]]:
    """Run one stage unless its journal says it finished; the ok records, sorted by key."""
    digest = hashlib.sha1("\n".join(sorted(key for key, _ in tasks)).encode()).hexdigest()
    with Journal(cfg.round_dir / f"{name}.jsonl") as journal:
        done = journal.completed()
        if done is None or done.get("tasks_sha1") != digest:  # new tasks (more instructions): run them
            report = await run_stage(f"round {cfg.task.round} {name}", tasks, work, journal, roles.base.usage, opts)
            if not report.complete:
                raise BudgetReached(f"{name}: {report.ok + report.rejected}/{report.total} tasks done")
            done = {**report.as_dict(), "tasks_sha1": digest}
            journal.mark_complete(done)
        reports.append(done)
        wanted = {key for key, _ in tasks}
        return [r for k, r in sorted(journal.records.items()) if k in wanted and r.get("status") == "ok"]


def _keep_longest(records: list[dict[str, Any]], text_key: str, cfg: SelfLengthenConfig, what: str) -> list[dict]:
    """The reference's keep rule, ranking by `len(text)` as its `drop_short` does."""
    rng = random.Random(f"{cfg.seed}/round{cfg.task.round}/keep/{what}")
    keep = length_biased_keep([len(r[text_key]) for r in records], rng)
    return [r for r, k in zip(records, keep, strict=True) if k]


def load_seed_instructions(path: Path) -> list[str]:
    """Seeds from a .jsonl file (field "instruction" or "prompt") or a .txt file (one per line)."""
    if not path.is_file():
        raise UserError(f"self_lengthen.seeds {path}: no such file; give a .jsonl with an 'instruction' "
                        "field or a .txt with one instruction per line")
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


async def _instructions(cfg: SelfLengthenConfig, roles: Roles, opts: RunOptions, reports: list) -> list[dict]:
    """Stage 1. The few-shot pool is this round's seeds, plus (pool: grow) the instructions that
    earlier waves of this round accepted; earlier rounds' instructions never join it."""
    seeds = load_seed_instructions(cfg.seeds_path)
    r = cfg.task.round
    if cfg.task.n_instructions == 0:
        tasks = [(f"r{r}-seed{i:06d}", {"given": text}) for i, text in enumerate(seeds)]
        return await _stage(cfg, "instructions", tasks, _expand_work(cfg, roles), roles, opts, reports)
    keys = [f"r{r}-i{i:06d}" for i in range(cfg.task.n_instructions)]
    if cfg.task.pool == "seeds":
        tasks = [(k, {"pool": seeds}) for k in keys]
        return await _stage(cfg, "instructions", tasks, _expand_work(cfg, roles), roles, opts, reports)
    wave, accepted, waves = cfg.task.pool_wave, [], []
    for start in range(0, len(keys), wave):
        tasks = [(k, {"pool": seeds + [a["instruction"] for a in accepted]}) for k in keys[start:start + wave]]
        waves.append([])
        accepted += await _stage(cfg, f"instructions.w{start // wave:04d}", tasks, _expand_work(cfg, roles),
                                 roles, opts, waves[-1])
    reports.append(_merge_waves(f"round {r} instructions", [w[0] for w in waves]))
    return sorted(accepted, key=lambda a: a["key"])


def _merge_waves(name: str, parts: list[dict]) -> dict:
    """One report for the waves of stage 1, shaped like a stage's."""
    total: dict[str, Any] = {"name": name}
    for key in ("total", "ok", "rejected", "resumed", "backups", "backups_won"):
        total[key] = sum(p[key] for p in parts)
    for key in ("reasons", "endpoint_errors"):
        total[key] = dict(sum((Counter(p[key]) for p in parts), Counter()))
    return total


def _expand_work(cfg: SelfLengthenConfig, roles: Roles):
    params = replace(cfg.sampling, max_tokens=cfg.task.short_max_tokens)

    async def work(key: str, payload: dict[str, Any]) -> dict[str, Any]:
        if "given" in payload:
            return {"status": "ok", "instruction": payload["given"], "attempts": 0, "reasons": {}}
        reasons: Counter = Counter()
        for attempt in range(cfg.task.instruction_attempts):
            examples = random.Random(f"{cfg.seed}/{key}/{attempt}").sample(payload["pool"], 2)
            p = params.with_seed(request_seed(cfg.seed, key, attempt)).with_stop(f"\nInstruction {len(examples) + 2}")
            reply = await roles.base.complete(prompts.user(prompts.EXPAND_REQUEST), prompts.expand_prefill(examples), p)
            text = prompts.parse_expansion(reply.text)
            if not MIN_INSTRUCTION_WORDS < count_words(text) < MAX_INSTRUCTION_WORDS:
                reasons["instruction_length"] += 1
                continue
            judged = await roles.base.chat(prompts.user(prompts.JUDGE.format(instruction=text)), p)
            verdict = prompts.parse_verdict(judged.text)
            if verdict:
                return {"status": "ok", "instruction": text, "attempts": attempt + 1, "reasons": dict(reasons)}
            reasons["judged_unsuitable" if verdict is False else "unclear_verdict"] += 1
        return {"status": "rejected", "attempts": cfg.task.instruction_attempts, "reasons": dict(reasons)}

    return work


def _answer_work(cfg: SelfLengthenConfig, roles: Roles):
    async def work(key: str, inst: dict[str, Any]) -> dict[str, Any]:
        reasons: Counter = Counter()
        for attempt in range(cfg.task.answer_attempts):
            params = cfg.sampling.with_seed(request_seed(cfg.seed, key, attempt))
            reply = await roles.generator.chat(prompts.user(inst["instruction"]), params)
            text = reply.text.strip()
            truncated = cfg.task.reject_truncated and reply.finish_reason == "length"
            reason = "hit_max_tokens" if truncated else check_response(text, cfg.filters)
            if reason is None:
                return {"status": "ok", "instruction_key": inst["key"], "instruction": inst["instruction"],
                        "response": text, "n_words": count_words(text), "finish_reason": reply.finish_reason,
                        "attempts": attempt + 1, "reasons": dict(reasons)}
            reasons[reason] += 1
        return {"status": "rejected", "instruction_key": inst["key"], "attempts": cfg.task.answer_attempts,
                "reasons": dict(reasons)}

    return work
