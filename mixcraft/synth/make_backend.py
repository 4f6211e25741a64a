"""Build the backend a synth config names (the one place that knows every backend class)."""

from __future__ import annotations

from dataclasses import replace

from mixcraft.synth.backends import (
    Backend,
    BackendConfig,
    FakeConfig,
    OpenAIConfig,
    TransformersConfig,
    Usage,
)
from mixcraft.synth.fake import FakeBackend
from mixcraft.synth.local_hf import TransformersBackend
from mixcraft.synth.openai_http import OpenAIBackend


def make_backend(cfg: BackendConfig, usage: Usage | None = None, *, concurrency: int = 1,
                 model: str | None = None) -> Backend:
    """The backend `cfg` describes; `model` replaces its model (Self-Lengthen's roles). torch and
    transformers are imported only when a TransformersBackend loads its model."""
    if model is not None and hasattr(cfg, "model"):
        cfg = replace(cfg, model=model)  # type: ignore[call-arg]
    if isinstance(cfg, FakeConfig):
        return FakeBackend(usage=usage, delay_s=cfg.delay_s)
    if isinstance(cfg, OpenAIConfig):
        return OpenAIBackend(cfg, usage=usage, concurrency=concurrency)
    if isinstance(cfg, TransformersConfig):
        return TransformersBackend(cfg, usage=usage)
    raise TypeError(f"unknown backend config {type(cfg).__name__}")
