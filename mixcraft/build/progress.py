"""Progress of a running build, for every stage, on a terminal and off one.

Each build task writes its running counts to a small JSON file (`TaskProgress`); the build
process reads them and shows, per source, tokens packed against an estimated total with a rate
and an ETA: the source's token budget where it has one, else the tokens so far scaled by the
input bytes not yet read (a sampled rate). On a terminal these are rich bars; off one (a pipe,
a Slurm or Ray log) a dated plain line every `every_s` seconds. Every stage (prepare, dedup,
tasks, finalize) is announced with a dated line when it starts and ends.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rich.console import Console
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


@dataclass
class SourceCounts:
    tokens: float = 0
    chars: float = 0
    docs: float = 0
    input_bytes: float = 0  # of the tasks that started
    tasks_started: int = 0
    tasks_done: int = 0


def read_counts(folder: Path) -> dict[str, SourceCounts]:
    """The tasks' progress files summed per source (a file being replaced is read next tick)."""
    totals: dict[str, SourceCounts] = defaultdict(SourceCounts)
    for f in folder.glob("*.json"):
        try:
            p = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        t = totals[p["source"]]
        t.tokens += p["tokens"]
        t.chars += p["chars"]
        t.docs += p["docs"]
        t.input_bytes += p["total_bytes"]
        t.tasks_started += 1
        t.tasks_done += int(p["done"])
    return totals


@dataclass(frozen=True)
class Plan:
    """What the build will do, per source: its token budget (None: all) and its tasks."""

    budgets: dict[str, float | None]
    tasks: dict[str, int]


def estimate_total(c: SourceCounts, budget: float | None, tasks: int) -> float | None:
    """Tokens this source will pack: its budget, else today's tokens scaled by the share of input
    read (bytes read over the started tasks' input, and the tasks not yet started)."""
    if c.tasks_done == tasks:
        return c.tokens
    if budget is not None:
        return max(budget, c.tokens)
    if not c.chars or not c.input_bytes or not c.tasks_started:
        return None
    per_task = c.input_bytes / c.tasks_started
    return c.tokens * (per_task * tasks) / c.chars


class Reporter:
    """Dated lines on stderr: a stage's start and end, and progress lines off a terminal."""

    def __init__(self, console: Console | None = None, every_s: float = 30.0):
        self.console = console or Console(stderr=True, highlight=False)
        self.every_s = every_s
        self.tty = self.console.is_terminal

    def line(self, text: str) -> None:
        self.console.print(f"[{datetime.now():%Y-%m-%d %H:%M:%S}] {text}", markup=False, highlight=False,
                           soft_wrap=True)

    @contextmanager
    def stage(self, name: str, detail: str = "") -> Iterator[None]:
        self.line(f"stage {name}: started" + (f" ({detail})" if detail else ""))
        start = time.monotonic()
        yield
        self.line(f"stage {name}: done in {_duration(time.monotonic() - start)}")


QUIET = Reporter(Console(quiet=True))  # for callers that report nothing (tests, benchmarks)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m{int(seconds % 60):02d}s"


def run_with_progress(run: Callable[[], object], plan: Plan, folder: Path, reporter: Reporter) -> None:
    """Run `run` (the executor) in a thread; report the tasks' progress until it ends."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run()
        except BaseException as exc:  # re-raised in the main thread below
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    if reporter.tty:
        _bars(thread, plan, folder, reporter.console)
    else:
        _lines(thread, plan, folder, reporter)
    if errors:
        raise errors[0]


def _bars(thread: threading.Thread, plan: Plan, folder: Path, console: Console) -> None:
    columns = (TextColumn("{task.description:<14}"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[tokens]:>7} tok  {task.fields[rate]:>9}"), TimeRemainingColumn())
    start = time.monotonic()
    with Progress(*columns, console=console, transient=False) as bars:
        ids = {name: bars.add_task(name, total=None, tokens="0", rate="") for name in plan.tasks}
        while True:
            alive = thread.is_alive()
            counts, elapsed = read_counts(folder), time.monotonic() - start
            for name, tid in ids.items():
                c = counts.get(name, SourceCounts())
                bars.update(tid, total=estimate_total(c, plan.budgets[name], plan.tasks[name]), completed=c.tokens,
                            tokens=human(c.tokens), rate=f"{human(c.tokens / max(elapsed, 1e-9))}/s")
            if not alive:
                break
            thread.join(timeout=0.5)


def _lines(thread: threading.Thread, plan: Plan, folder: Path, reporter: Reporter) -> None:
    start = time.monotonic()
    while thread.is_alive():
        thread.join(timeout=reporter.every_s)
        if thread.is_alive():
            reporter.line(progress_line(read_counts(folder), plan, time.monotonic() - start))


def progress_line(counts: dict[str, SourceCounts], plan: Plan, elapsed: float) -> str:
    """`tasks: 12.3M of ~20.1M tokens (61%), 1.52M tok/s, eta 8s; 40/332 tasks done`."""
    done = sum(c.tokens for c in counts.values())
    totals = [estimate_total(counts.get(n, SourceCounts()), plan.budgets[n], plan.tasks[n]) for n in plan.tasks]
    rate = done / max(elapsed, 1e-9)
    finished = sum(c.tasks_done for c in counts.values())
    text = f"stage tasks: {human(done)}"
    if all(t is not None for t in totals):
        total = sum(totals)
        left = max(total - done, 0) / rate if rate else float("inf")
        text += f" of ~{human(total)} tokens ({100 * done / max(total, 1):.0f}%), {human(rate)} tok/s, eta " \
                f"{_duration(left) if left != float('inf') else '?'}"
    else:
        text += f" tokens, {human(rate)} tok/s (total not known yet)"
    return f"{text}; {finished}/{sum(plan.tasks.values())} tasks done"
