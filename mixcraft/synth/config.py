"""Synth config files: one YAML per command, loaded by `mixcraft.schema` into frozen dataclasses.

    out: ../../out/self-lengthen       # paths are relative to the config file's folder
    seed: 0
    backend: {type: openai, endpoint: http://127.0.0.1:8000/v1, model: BASE}
    sampling: {temperature: 0.7, top_p: 0.8, top_k: 20, repetition_penalty: 1.1, max_tokens: 16384}
    filters: {stop_words: [revised, revision, response, version, paragraph], ngram_words: 10}
    run: {concurrency: 256, straggler_wait_s: 300}
    self_lengthen: {round: 1, n_instructions: 5000}

Blocks: `backend` (backends.py: openai | transformers | fake), `sampling` (backends.SamplingParams),
`filters` (textops.ResponseFilters), `run` (runner.RunOptions) and the command's own block
(`self_lengthen` or `long_qa`, below). Every default is written out in recipes/synth/*.yaml.
CLI flags only override these values (`--set run.concurrency=512`, or the shorthands).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal

from mixcraft import schema
from mixcraft.schema import Invalid, NonNegative, Positive, Range, RelPath
from mixcraft.synth.backends import (
    BACKEND_TYPES,
    BackendConfig,
    OpenAIConfig,
    SamplingParams,
    TransformersConfig,
)
from mixcraft.synth.runner import RunOptions
from mixcraft.synth.textops import ResponseFilters

REGISTRIES = {BackendConfig: BACKEND_TYPES}
BUNDLED_SEEDS = Path(__file__).resolve().parents[2] / "recipes" / "synth" / "seed_instructions.jsonl"


@dataclass(frozen=True)
class SelfLengthenTask:
    """The `self_lengthen:` block: one round of Self-Lengthen's loop (ROUNDS.md)."""

    round: Annotated[int, Range(ge=1)] = 1
    seeds: RelPath | None = None  # .jsonl with "instruction" (or "prompt"), or .txt; null: the bundled 24
    n_instructions: Annotated[int, NonNegative] = 5000  # run.sh's instruct_count; 0: the seeds as they are
    # seeds: few-shot examples come from the seeds only (the reference's llama/step0_self_instruct.py);
    # grow: also from this round's accepted instructions, in waves of `pool_wave` (its qwen/ variant
    # grows the pool as instructions arrive). Nothing carries over from earlier rounds either way.
    pool: Literal["seeds", "grow"] = "seeds"
    pool_wave: Annotated[int, Positive] = 500
    responses_per_instruction: Annotated[int, Positive] = 2
    extensions_per_response: Annotated[int, Positive] = 2
    instruction_attempts: Annotated[int, Positive] = 10  # the reference's retry_times per stage
    answer_attempts: Annotated[int, Positive] = 20
    extend_attempts: Annotated[int, Positive] = 20
    extend_passes: Annotated[int, Positive] = 3
    min_growth: Annotated[float, Range(gt=1)] = 1.2
    # Instructions must be under 500 words (~670 Llama-3 tokens), and the judge answers yes or no.
    short_max_tokens: Annotated[int, Positive] = 1024
    # The reference keeps an answer that hit max_tokens if it passes the filters; true rejects it.
    reject_truncated: bool = False
    generator_model: str | None = None  # served model name (or model folder) of the Generator
    extender_model: str | None = None  # ... of the Extender; null: backend.model


@dataclass(frozen=True)
class SelfLengthenConfig:
    out: RelPath
    seed: int = 0
    backend: BackendConfig = field(default_factory=OpenAIConfig)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    filters: ResponseFilters = field(default_factory=ResponseFilters)
    run: RunOptions = field(default_factory=RunOptions)
    self_lengthen: SelfLengthenTask = field(default_factory=SelfLengthenTask)

    @property
    def task(self) -> SelfLengthenTask:
        return self.self_lengthen

    @property
    def round_dir(self) -> Path:
        return Path(self.out) / f"round_{self.self_lengthen.round}"

    @property
    def seeds_path(self) -> Path:
        return Path(self.self_lengthen.seeds) if self.self_lengthen.seeds else BUNDLED_SEEDS


@dataclass(frozen=True)
class LongQATask:
    """The `long_qa:` block: Llama 2 Long's self-instructed QA over long documents."""

    inputs: tuple[RelPath, ...] = ()  # .txt files, .jsonl files, or folders of them
    text_field: str = "text"
    chunk_words: Annotated[int, Positive] = 1500
    min_doc_words: Annotated[int, NonNegative] = 2000
    max_doc_words: Annotated[int, Positive] = 24000  # ~32K Llama-3 tokens of prose, Llama 2 Long's context
    pairs_per_doc: Annotated[int, Positive] = 2
    answer_style: Literal["normal", "short", "both"] = "both"
    # Llama 2 Long trains with LM loss on the long input too (QuALITY 77.3 with it, 59.3 without).
    loss_on_input: bool = True
    max_attempts: Annotated[int, Positive] = 5

    def __post_init__(self) -> None:
        if self.max_doc_words < self.chunk_words:
            raise Invalid(f"must be at least chunk_words ({self.chunk_words})", "max_doc_words")


@dataclass(frozen=True)
class QASampling(SamplingParams):
    """Long-QA's `sampling:` block: a QA pair is two short lines, and 512 tokens leave room for
    a long-form answer, so the default is 512 new tokens instead of Self-Lengthen's 16,384."""

    max_tokens: Annotated[int, Positive] = 512


@dataclass(frozen=True)
class LongQAConfig:
    out: RelPath
    seed: int = 0
    backend: BackendConfig = field(default_factory=OpenAIConfig)
    sampling: QASampling = field(default_factory=QASampling)
    run: RunOptions = field(default_factory=RunOptions)
    long_qa: LongQATask = field(default_factory=LongQATask)

    @property
    def task(self) -> LongQATask:
        return self.long_qa


def load_config(cls: type, path: Path, overrides: list[str] | tuple[str, ...] = ()):
    """A synth config file (plus `key=value` overrides) as `cls`; every mistake one line."""
    cfg = schema.load(cls, Path(path), "synth config", overrides=overrides, registries=REGISTRIES)
    cfg = replace(cfg, out=os.path.normpath(cfg.out))  # recipes/synth/../../out -> out
    return _resolve_role_models(cfg, Path(path).resolve().parent)


def _resolve_role_models(cfg, base: Path):
    """With a local transformers backend, Self-Lengthen's role models are folders: relative to
    the config file, like every other path in it. (For a server they are served names.)"""
    task = getattr(cfg, "self_lengthen", None)
    if task is None or not isinstance(cfg.backend, TransformersConfig):
        return cfg
    fix = {k: str(base / v) for k in ("generator_model", "extender_model")
           if (v := getattr(task, k)) and not Path(v).expanduser().is_absolute()}
    return replace(cfg, self_lengthen=replace(task, **fix)) if fix else cfg
