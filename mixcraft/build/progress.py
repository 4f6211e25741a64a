"""Progress of a running build: each task writes its running counts to a small JSON file
(`TaskProgress`), and the build process draws rich bars from them, one per source."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from pathlib import Path

from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from mixcraft.core.fmt import human
from mixcraft.core.outdir import write_atomic

SAVE_EVERY_S = 0.5


class TaskProgress:
    """A task's running counts (documents, tokens, characters read), saved for the bars."""

    def __init__(self, path: Path, source: str, total_bytes: int):
        self.path, self.source, self.total = path, source, total_bytes
        self.docs = self.tokens = self.chars = 0
        self._last = 0.0
        path.parent.mkdir(parents=True, exist_ok=True)

    def add_tokens(self, n: int) -> None:
        self.docs += 1
        self.tokens += n
        now = time.monotonic()
        if now - self._last > SAVE_EVERY_S:
            self.save(done=False)
            self._last = now

    def save(self, *, done: bool) -> None:
        write_atomic(self.path, json.dumps({"source": self.source, "docs": self.docs, "tokens": self.tokens,
                                            "chars": self.chars, "total_bytes": self.total, "done": done}))


def _read_progress(folder: Path) -> dict[str, dict[str, float]]:
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for f in folder.glob("*.json"):
        try:
            p = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # being replaced right now; read it next tick
        t = totals[p["source"]]
        for k in ("docs", "tokens", "chars", "total_bytes"):
            t[k] += p[k]
        t["tasks"] += 1
        t["done"] += int(p["done"])
    return totals


def run_with_progress(executor, recipe, folder: Path) -> None:
    """Run `executor` in a thread; show per-source bars (input bytes read, tokens/s, ETA)."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            executor.run()
        except BaseException as exc:  # re-raised in the main thread below
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    columns = (TextColumn("{task.description:<14}"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[tokens]:>7} tok  {task.fields[rate]:>9}"), TimeRemainingColumn())
    start = time.monotonic()
    with Progress(*columns, transient=False) as bars:
        ids = {s.name: bars.add_task(s.name, total=None, tokens="0", rate="") for s in recipe.sources}
        tasks = {s.name: s.tasks for s in recipe.sources}
        thread.start()
        while thread.is_alive():
            thread.join(timeout=0.5)
            _update(bars, ids, tasks, _read_progress(folder), time.monotonic() - start)
        _update(bars, ids, tasks, _read_progress(folder), time.monotonic() - start, final=True)
    if errors:
        raise errors[0]


def _update(bars, ids, tasks, totals, elapsed: float, final: bool = False) -> None:
    for name, tid in ids.items():
        t = totals.get(name)
        if not t:
            continue
        total = t["total_bytes"] or None  # unknown for hub datasets: the bar pulses
        done = min(t["chars"], total) if total else t["chars"]
        finished = final or (t["tasks"] == tasks[name] and t["done"] == tasks[name])
        if finished:
            total = done = total or 1
        bars.update(tid, total=total, completed=done, tokens=human(t["tokens"]),
                    rate=f"{human(t['tokens'] / max(elapsed, 1e-9))}/s")
