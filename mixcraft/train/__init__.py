"""The bundled trainer: `mixcraft train CONFIG`, or `torchrun ... -m mixcraft.train CONFIG`.

Llama with document-masked attention (FlashAttention varlen, PyTorch varlen, or SDPA), FSDP2
with context parallelism (Ulysses all-to-all), chunked cross-entropy, DCP checkpoints and HF
export, reading a `mixcraft build` output. Imports stay inside `run_train` so that importing the
CLI does not import torch.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["run_train"]


def run_train(config_path: Path, overrides: list[str] | tuple[str, ...] = ()) -> None:
    """Check the YAML config at `config_path` (with `key=value` overrides) and train.
    Raises UserError on a user mistake."""
    from mixcraft.train.config import load_config
    from mixcraft.train.loop import train

    train(load_config(Path(config_path), overrides))
