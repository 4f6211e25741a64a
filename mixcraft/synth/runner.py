"""Runs one stage of a generator: many independent tasks against a backend, resumably.

- up to `concurrency` tasks in flight on one asyncio event loop; a task awaits its requests one
  after another, so requests in flight never exceed `concurrency` (the connection pool's size);
- finished tasks are journaled in batches as they arrive (journal.py), and tasks already in the
  journal are skipped, so a rerun after a crash, kill -9 or Ctrl-C picks up where it stopped;
- a token budget stops submitting new work once reached; the stage stays unfinished so that
  the same command, rerun, continues it;
- endpoint failures (after the backend's own retries) are counted, the task is queued again a
  few times, and a run of consecutive failures aborts with a message saying what to fix;
- stragglers: once more than `straggler_frac` of the tasks are done and nothing is left to
  submit, a task running for over `straggler_wait_s` gets a backup copy (same seeds, so the
  same answer from a seeded server); the first copy to finish is kept, the other cancelled.
  Self-Lengthen's code kills its run at 95% done instead and loses the last 5%; a backup bounds
  the tail without losing a sample (MapReduce's backup tasks, Dean and Ghemawat 2004, §3.6).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Annotated, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from mixcraft.errors import UserError
from mixcraft.schema import NonNegative, Positive, Range
from mixcraft.synth.backends import BackendError, Usage, within
from mixcraft.synth.journal import Journal

Work = Callable[[str, Any], Awaitable[dict[str, Any]]]  # (key, payload) -> record with "status", "reasons"
console = Console(stderr=True)


@dataclass(frozen=True)
class RunOptions:
    """The `run:` block: how stages run (what they generate is the task's block)."""

    # Self-Lengthen's run.sh runs 32 workers per GPU, 256 on one 8-GPU node.
    concurrency: Annotated[int, Range(ge=1, le=65536)] = 256
    token_budget: Annotated[int, Positive] | None = None  # prompt + completion tokens, this invocation
    straggler_frac: Annotated[float, Range(gt=0, le=1)] = 0.95
    straggler_wait_s: Annotated[float, Positive] = 300.0
    max_consecutive_failures: Annotated[int, Positive] = 20
    task_retries: Annotated[int, NonNegative] = 2
    progress: bool = True


@dataclass
class StageReport:
    name: str
    total: int
    ok: int = 0
    rejected: int = 0
    resumed: int = 0  # already in the journal when the stage started
    reasons: Counter = field(default_factory=Counter)
    endpoint_errors: Counter = field(default_factory=Counter)
    backups: int = 0  # straggler copies started
    backups_won: int = 0  # ... that finished before the task they backed up
    budget_reached: bool = False
    complete: bool = False

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["reasons"], d["endpoint_errors"] = dict(self.reasons), dict(self.endpoint_errors)
        return d


def request_seed(*parts: object) -> int:
    """A stable 31-bit sampling seed per (run seed, task, attempt): a rerun asks the same questions
    with the same seeds, and a retry of a rejected attempt gets a fresh one."""
    return int(hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


class BudgetReached(Exception):
    """The token budget ran out; what was generated is journaled, rerun to continue."""


async def run_stage(
    name: str, tasks: list[tuple[str, Any]], work: Work, journal: Journal, usage: Usage, opts: RunOptions
) -> StageReport:
    """Run `work` on every task not yet journaled; journal each result as it arrives."""
    report = StageReport(name=name, total=len(tasks))
    for key, _ in tasks:
        if key in journal:
            report.resumed += 1
            _tally(report, journal.records[key])
    queue = deque((key, payload, 0) for key, payload in tasks if key not in journal)
    with _progress(opts) as progress:
        bar = progress.add_task(name, total=len(tasks), completed=report.resumed, info="")
        loop = _StageLoop(queue, work, journal, usage, opts, report)
        await loop.run(lambda: _advance(progress, bar, report, usage))
    report.complete = report.ok + report.rejected == report.total
    report.budget_reached = report.budget_reached and not report.complete
    return report


@dataclass(frozen=True)
class _Copy:
    key: str
    payload: Any
    tries: int
    started: float
    backup: bool = False


class _StageLoop:
    """Keeps up to `concurrency` tasks in flight and journals results in batches as they arrive.

    Finished tasks are handed over by a done-callback (O(1) each), not by `asyncio.wait` over
    everything running, which costs O(tasks in flight) per wake-up: 3.2 ms per call over 1,024
    pending tasks here, most of a core at the few hundred wake-ups a second of 1,024 in flight.
    """

    def __init__(self, queue: deque, work: Work, journal: Journal, usage: Usage, opts: RunOptions,
                 report: StageReport):
        self.queue, self.work, self.journal, self.usage, self.opts = queue, work, journal, usage, opts
        self.report = report
        self.running: dict[asyncio.Task, _Copy] = {}
        self.copies: Counter = Counter()  # key -> copies running (2 while a backup runs)
        self.recorded: set[str] = set()
        self.done: list[asyncio.Task] = []
        self.wake = asyncio.Event()
        self.failures = 0

    async def run(self, tick: Callable[[], None]) -> None:
        try:
            while self.queue or self.running:
                self._submit()
                if not self.running:
                    break  # budget reached with nothing running
                await self._wait(self._next_backup_in())
                self._collect_batch(self._take_done())
                tick()
                self._start_backups()
            _raise_if_tasks_failed(self.queue, self.report, self.journal)
        finally:
            await self._stop()

    def _launch(self, copy: _Copy) -> None:
        task = asyncio.ensure_future(self.work(copy.key, copy.payload))
        task.add_done_callback(self._on_done)
        self.running[task] = copy
        self.copies[copy.key] += 1

    def _on_done(self, task: asyncio.Task) -> None:
        self.done.append(task)
        self.wake.set()

    async def _wait(self, timeout: float | None) -> None:
        if not self.done:
            try:
                await (self.wake.wait() if timeout is None else within(timeout, self.wake.wait()))
            except asyncio.TimeoutError:
                pass
        self.wake.clear()

    def _take_done(self) -> list[tuple[asyncio.Task, _Copy]]:
        done, self.done = self.done, []
        return [(t, self.running.pop(t)) for t in done if t in self.running]

    def _submit(self) -> None:
        budget = self.opts.token_budget
        self.report.budget_reached = budget is not None and self.usage.total_tokens >= budget
        while self.queue and len(self.running) < self.opts.concurrency and not self.report.budget_reached:
            key, payload, tries = self.queue.popleft()
            self._launch(_Copy(key, payload, tries, time.monotonic()))

    def _collect_batch(self, finished: list[tuple[asyncio.Task, _Copy]]) -> None:
        """Handle every finished task, journal the batch, then raise the first error, if any."""
        batch: list[dict[str, Any]] = []
        errors: list[BaseException] = []
        for task, copy in finished:
            try:
                self._collect(task, copy, batch)
            except Exception as exc:  # noqa: BLE001 - re-raised below, after the batch is saved
                errors.append(exc)
        self.journal.append_many(batch)
        if errors:
            raise errors[0]

    def _collect(self, task: asyncio.Task, copy: _Copy, batch: list[dict[str, Any]]) -> None:
        self.copies[copy.key] -= 1
        if task.cancelled() or copy.key in self.recorded:
            return  # a copy whose twin already finished
        exc = task.exception()
        if exc is None:
            self.failures = 0
            self._record(copy.key, task.result(), batch)
            self.report.backups_won += int(copy.backup)
            if self.copies[copy.key]:
                self._cancel_copies(copy.key)
            return
        if not isinstance(exc, BackendError):
            raise exc
        if self.copies[copy.key]:
            return  # the other copy is still running; it may yet succeed
        self.failures += 1
        self.report.endpoint_errors[exc.kind] += 1
        _check_failures(self.failures, exc, self.journal, self.opts)
        if exc.permanent:  # the server refuses this request: record it, don't retry it
            self._record(copy.key, {"status": "rejected", "reasons": {exc.kind: 1}, "error": str(exc)[:300]}, batch)
        elif copy.tries < self.opts.task_retries:
            self.queue.append((copy.key, copy.payload, copy.tries + 1))

    def _record(self, key: str, record: dict[str, Any], batch: list[dict[str, Any]]) -> None:
        batch.append({"key": key, **record})
        self.recorded.add(key)
        _tally(self.report, record)

    def _cancel_copies(self, key: str) -> None:
        for task, copy in self.running.items():
            if copy.key == key:
                task.cancel()

    def _in_tail(self) -> bool:
        finished = self.report.ok + self.report.rejected
        return not self.queue and finished > self.opts.straggler_frac * self.report.total

    def _waiting_for_backup(self) -> list[_Copy]:
        """Originals running alone (not yet backed up, not finished by a twin)."""
        return [c for c in self.running.values()
                if not c.backup and self.copies[c.key] == 1 and c.key not in self.recorded]

    def _next_backup_in(self) -> float | None:
        if not self._in_tail():
            return None
        due = [c.started + self.opts.straggler_wait_s for c in self._waiting_for_backup()]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _start_backups(self) -> None:
        if not self._in_tail():
            return
        now = time.monotonic()
        for copy in self._waiting_for_backup():
            if len(self.running) >= self.opts.concurrency:
                break  # never more requests in flight than the server was sized for
            if now - copy.started >= self.opts.straggler_wait_s:
                self._launch(replace(copy, started=now, backup=True))
                self.report.backups += 1

    async def _stop(self) -> None:
        """Leaving (done, an error, Ctrl-C): keep what finished, cancel the rest and wait for it."""
        finished = [(t, c) for t, c in self._take_done() if not t.cancelled() and t.exception() is None]
        batch: list[dict[str, Any]] = []
        for task, copy in finished:
            if copy.key not in self.recorded:
                self._record(copy.key, task.result(), batch)
        self.journal.append_many(batch)
        for task in self.running:
            task.cancel()
        if self.running:
            await asyncio.gather(*self.running, return_exceptions=True)
        self.running.clear()


def _check_failures(n: int, exc: BackendError, journal: Journal, opts: RunOptions) -> None:
    if n >= opts.max_consecutive_failures:
        raise UserError(
            f"{n} requests in a row failed ({exc.kind}): {exc}. The {len(journal.records)} samples "
            f"finished so far are saved in {journal.path}; fix the endpoint and rerun the same command"
        )


def _raise_if_tasks_failed(queue, report: StageReport, journal: Journal) -> None:
    failed = report.total - report.ok - report.rejected
    if failed and not report.budget_reached and not queue:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(report.endpoint_errors.items()))
        raise UserError(
            f"{report.name}: {failed} task(s) still failing after retries ({kinds}); the finished "
            f"samples are saved in {journal.path}; rerun the same command to retry the rest"
        )


def _tally(report: StageReport, record: dict[str, Any]) -> None:
    if record.get("status") == "ok":
        report.ok += 1
    else:
        report.rejected += 1
    report.reasons.update(record.get("reasons", {}))


def _progress(opts: RunOptions) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not opts.progress,
    )


def _advance(progress: Progress, bar, report: StageReport, usage: Usage) -> None:
    info = f"ok {report.ok} · rejected {report.rejected} · {usage.total_tokens:,} tok"
    if report.endpoint_errors:
        info += f" · endpoint errors {sum(report.endpoint_errors.values())}"
    progress.update(bar, completed=report.ok + report.rejected, info=info)
