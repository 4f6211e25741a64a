"""Per-document accounting: every input record ends as kept or dropped (with a reason).

One `Ledger` per (source, task). Invariants that `mixcraft verify` re-checks on the merged
manifest:
    docs_read   == docs_kept + sum(docs_dropped.values())
    tokens_kept == tokens_packed + tokens_tail
A kept document contributed at least one token to a row; `docs_split` counts kept documents
whose tokens landed in more than one piece (a chunked long document, or a short document
continued into the next row). Reader-level skips of things that are not documents (a binary
file inside a repository) are `notes`, so they are counted without breaking the invariants.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixcraft.core.outdir import write_atomic
from mixcraft.errors import UserError

_EXAMPLES_PER_REASON = 3
EXCERPT_CHARS = 500  # of a dropped document's text, in the optional dropped-samples file


@dataclass
class Ledger:
    source: str
    strict: bool = False
    docs_read: int = 0
    docs_kept: int = 0
    docs_split: int = 0
    docs_dropped: Counter = field(default_factory=Counter)
    tokens_kept: int = 0
    tokens_packed: int = 0
    tokens_tail: int = 0
    tokens_dropped: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    budget_reached: bool = False
    dropped_file: Any = field(default=None, repr=False)  # open JSONL of dropped samples, or None

    def write_dropped_to(self, path: Path) -> None:
        """Also write each dropped document as a JSONL line (id, reason, excerpt) to `path`.
        Opened with "w": a re-run task rewrites its file from scratch, as it does its shards."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.dropped_file = open(path, "w", encoding="utf-8")

    def close(self) -> None:
        if self.dropped_file is not None:
            self.dropped_file.close()
            self.dropped_file = None

    def read(self, n: int = 1) -> None:
        self.docs_read += n

    def drop(self, reason: str, *, where: str = "", tokens: int = 0, text: str | None = None) -> None:
        """Count one dropped input record (with its text, when known, for the dropped-samples file)."""
        self.docs_dropped[reason] += 1
        self.tokens_dropped[reason] += tokens
        self._example(reason, where)
        if self.dropped_file is not None:
            line = {"id": where, "reason": reason, "tokens": tokens,
                    "excerpt": None if text is None else text[:EXCERPT_CHARS]}
            self.dropped_file.write(json.dumps(line, ensure_ascii=False) + "\n")

    def skip(self, reason: str, where: str) -> None:
        """A malformed or unusable input record: dropped, or an error under --strict."""
        if self.strict:
            raise UserError(f"{where}: {reason.replace('_', ' ')} (run without --strict to skip and count it)")
        self.read()
        self.drop(reason, where=where)

    def note(self, reason: str, where: str = "", n: int = 1, *, fatal: bool = True) -> None:
        """Count something skipped that is not a whole document (a file inside a repo). Under
        --strict a note with a place is an error, unless `fatal=False`: a repository policy skip
        (an empty, binary or vendored file) is normal in real repositories, not bad input."""
        if self.strict and where and fatal:
            raise UserError(f"{where}: {reason.replace('_', ' ')} (run without --strict to skip and count it)")
        self.notes[reason] += n
        self._example(reason, where)

    def _example(self, reason: str, where: str) -> None:
        if where:
            bucket = self.examples.setdefault(reason, [])
            if len(bucket) < _EXAMPLES_PER_REASON:
                bucket.append(where)

    def absorb(self, other: dict[str, Any]) -> None:
        """Add the counts of a saved ledger (`to_dict` form), e.g. a pass that ran before this task."""
        self.docs_read += other["docs"]["read"]
        self.docs_kept += other["docs"]["kept"]
        self.docs_split += other["docs"]["split"]
        self.docs_dropped.update(other["docs"]["dropped"])
        for k in ("kept", "packed", "tail"):
            setattr(self, f"tokens_{k}", getattr(self, f"tokens_{k}") + other["tokens"][k])
        self.tokens_dropped.update(other["tokens"]["dropped"])
        self.notes.update(other["notes"])
        for reason, wheres in other["examples"].items():
            for where in wheres:
                self._example(reason, where)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "docs": {"read": self.docs_read, "kept": self.docs_kept, "split": self.docs_split,
                     "dropped": dict(sorted(self.docs_dropped.items()))},
            "tokens": {"kept": self.tokens_kept, "packed": self.tokens_packed, "tail": self.tokens_tail,
                       "dropped": dict(sorted((k, v) for k, v in self.tokens_dropped.items() if v))},
            "notes": dict(sorted(self.notes.items())),
            "examples": {k: v for k, v in sorted(self.examples.items())},
            "budget_reached": self.budget_reached,
        }

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps(self.to_dict(), indent=1))


def merge_ledgers(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum per-task ledgers of one source into one."""
    docs_dropped: Counter = Counter()
    tokens_dropped: Counter = Counter()
    notes: Counter = Counter()
    examples: dict[str, list[str]] = {}
    totals = Counter()
    budget = False
    for p in parts:
        for k in ("read", "kept", "split"):
            totals[f"docs_{k}"] += p["docs"][k]
        for k in ("kept", "packed", "tail"):
            totals[f"tokens_{k}"] += p["tokens"][k]
        docs_dropped.update(p["docs"]["dropped"])
        tokens_dropped.update(p["tokens"]["dropped"])
        notes.update(p["notes"])
        for reason, where in p["examples"].items():
            examples.setdefault(reason, [])
            examples[reason] = (examples[reason] + where)[:_EXAMPLES_PER_REASON]
        budget = budget or p["budget_reached"]
    return {
        "docs": {"read": totals["docs_read"], "kept": totals["docs_kept"], "split": totals["docs_split"],
                 "dropped": dict(sorted(docs_dropped.items()))},
        "tokens": {"kept": totals["tokens_kept"], "packed": totals["tokens_packed"], "tail": totals["tokens_tail"],
                   "dropped": dict(sorted(tokens_dropped.items()))},
        "notes": dict(sorted(notes.items())),
        "examples": dict(sorted(examples.items())),
        "budget_reached": budget,
    }


def ledger_faults(name: str, led: dict[str, Any]) -> list[str]:
    """The invariants, as messages; empty when the ledger adds up."""
    faults = []
    d, t = led["docs"], led["tokens"]
    dropped = sum(d["dropped"].values())
    if d["read"] != d["kept"] + dropped:
        faults.append(f"{name}: docs read {d['read']} != kept {d['kept']} + dropped {dropped}")
    if t["kept"] != t["packed"] + t["tail"]:
        faults.append(f"{name}: tokens kept {t['kept']} != packed {t['packed']} + tail {t['tail']}")
    if d["split"] > d["kept"]:
        faults.append(f"{name}: split docs {d['split']} > kept docs {d['kept']}")
    return faults
