"""What an evaluation runs: the `eval:` section of a train config, and `mixcraft eval`'s options.

A frozen dataclass read by `mixcraft.schema` (YAML path in every error), so the trainer's
`eval:` block and the command line share one definition and one set of checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from mixcraft.eval.tasks import TASKS
from mixcraft.schema import Invalid, NonNegative, Positive, Range

DEFAULT_TASKS = tuple(TASKS)  # every synthetic task
DEFAULT_LENGTHS = (8192, 16384, 32768, 65536)
DEFAULT_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class EvalConfig:
    """Defaults are the full suite. `mixcraft eval` reads them from its flags; the trainer from
    its `eval:` section, running it every `every` steps and after the last one (`final`)."""

    # Synthetic task names (see mixcraft/eval/tasks.py), or paths of user JSONL task files
    # (`mixcraft eval` only: free-form answers need generation).
    tasks: tuple[str, ...] = DEFAULT_TASKS
    validation: bool = True  # validation loss per source and loss by position
    # Context lengths in tokens. null: 8K, 16K, 32K, 64K, keeping those within the model's
    # context (its max_position_embeddings); lengths given explicitly are used as given.
    lengths: tuple[Annotated[int, Positive], ...] | None = None
    depths: tuple[Annotated[float, Range(ge=0, le=1)], ...] = DEFAULT_DEPTHS
    samples: Annotated[int, Positive] = 2  # per (task, length, depth) cell
    validation_rows: Annotated[int, NonNegative] = 2  # rows per stream; 0: every validation row
    position_bucket: Annotated[int, Positive] = 1024  # width of the first loss-by-position bucket
    # Tokens per forward pass: shorter samples are packed up to it. null: the longest length.
    tokens_per_forward: Annotated[int, Positive] | None = None
    max_new_tokens: Annotated[int, Positive] = 32  # generation for user JSONL tasks
    seed: int = 0
    every: Annotated[int, NonNegative] = 0  # trainer: evaluate every N optimizer steps (0: never midway)
    final: bool = True  # trainer: evaluate after the last step

    def __post_init__(self) -> None:
        for name in self.tasks:
            if name not in TASKS and not name.endswith(".jsonl"):
                raise Invalid(f"unknown task '{name}' (known: {', '.join(TASKS)}; or a path ending in .jsonl)",
                              "tasks")
        if len(set(self.tasks)) != len(self.tasks):
            raise Invalid("a task is listed twice", "tasks")
        if not self.depths:
            raise Invalid("give at least one depth (e.g. [0.0, 0.5, 1.0])", "depths")
        if self.lengths is not None and not self.lengths:
            raise Invalid("give at least one length, or null for the default", "lengths")

    @property
    def synthetic(self) -> list[str]:
        return [t for t in self.tasks if t in TASKS]

    @property
    def jsonl(self) -> list[str]:
        return [t for t in self.tasks if t.endswith(".jsonl")]

    def resolved_lengths(self, model_context: int) -> list[int]:
        """The lengths to run: as given, or the defaults that fit the model (its context when none do)."""
        if self.lengths is not None:
            return sorted(self.lengths)
        return [n for n in DEFAULT_LENGTHS if n <= model_context] or [model_context]
