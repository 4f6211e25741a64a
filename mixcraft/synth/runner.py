"""Runs one stage of a generator: many independent tasks against a backend, resumably.

- limited concurrency (a thread pool; the backend does blocking I/O or holds a lock);
- every finished task is journaled at once (see journal.py), and tasks already in the journal
  are skipped, so a rerun after a crash or Ctrl-C picks up where it stopped;
- a token budget stops submitting new work once reached; the stage stays unfinished so that
  the same command, rerun, continues it;
- endpoint failures (after the backend's own retries) are counted, the task is queued again a
  few times, and a run of consecutive failures aborts with a message saying what to fix;
- stragglers: once more than `straggler_frac` of the tasks are done and nothing is left to
  submit, the rest get `straggler_wait_s` more, then are cut (Self-Lengthen's code kills its
  run at 95% done, since a few very long generations can double the wall time).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any

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
from mixcraft.synth.backends import BackendError, Usage
from mixcraft.synth.journal import Journal

Work = Callable[[str, Any], dict[str, Any]]  # (key, payload) -> record with "status" and "reasons"
console = Console(stderr=True)


@dataclass
class RunOptions:
    concurrency: int = 8
    token_budget: int | None = None  # prompt + completion tokens for this invocation
    straggler_frac: float = 0.95
    straggler_wait_s: float = 300.0
    max_consecutive_failures: int = 20
    task_retries: int = 2
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
    straggler_cut: int = 0
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


def run_stage(
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
        loop.run(lambda: _advance(progress, bar, report, usage))
    report.complete = report.ok + report.rejected + report.straggler_cut == report.total
    report.budget_reached = report.budget_reached and not report.complete
    return report


class _StageLoop:
    """Keeps up to `concurrency` tasks in flight and journals each result as it arrives."""

    def __init__(self, queue: deque, work: Work, journal: Journal, usage: Usage, opts: RunOptions, report):
        self.queue, self.work, self.journal, self.usage, self.opts, self.report = (
            queue,
            work,
            journal,
            usage,
            opts,
            report,
        )
        self.in_flight: dict[Future, tuple[str, Any, int]] = {}
        self.consecutive_failures = 0
        self.cut_deadline: float | None = None

    def run(self, tick: Callable[[], None]) -> None:
        pool = ThreadPoolExecutor(max_workers=max(1, self.opts.concurrency), thread_name_prefix="synth")
        cut = False
        try:
            while self.queue or self.in_flight:
                self._submit(pool)
                if not self.in_flight:
                    break  # budget reached with nothing running
                done, _ = wait(
                    self.in_flight, timeout=_timeout(self.cut_deadline), return_when=FIRST_COMPLETED
                )
                for fut in done:
                    self._collect(fut, *self.in_flight.pop(fut))
                tick()
                cut = self._cut_stragglers()
                if cut:
                    break
            _raise_if_tasks_failed(self.queue, self.report, self.journal)
        finally:
            if not cut:  # leaving on an error or Ctrl-C: keep whatever already finished
                _journal_finished(self.in_flight, self.journal, self.report)
            # Cut stragglers may still be running; don't wait for them (their results are dropped).
            pool.shutdown(wait=False, cancel_futures=True)

    def _submit(self, pool: ThreadPoolExecutor) -> None:
        budget = self.opts.token_budget
        self.report.budget_reached = budget is not None and self.usage.total_tokens >= budget
        while self.queue and len(self.in_flight) < self.opts.concurrency and not self.report.budget_reached:
            key, payload, tries = self.queue.popleft()
            self.in_flight[pool.submit(self.work, key, payload)] = (key, payload, tries)

    def _collect(self, fut: Future, key: str, payload: Any, tries: int) -> None:
        try:
            record = fut.result()
        except BackendError as exc:
            self.consecutive_failures += 1
            self.report.endpoint_errors[exc.kind] += 1
            _check_failures(self.consecutive_failures, exc, self.journal, self.opts)
            if exc.permanent:  # the server refuses this request: record it, don't retry it
                self._record(key, {"status": "rejected", "reasons": {exc.kind: 1}, "error": str(exc)[:300]})
            elif tries < self.opts.task_retries:
                self.queue.append((key, payload, tries + 1))
            return
        self.consecutive_failures = 0
        self._record(key, record)

    def _record(self, key: str, record: dict[str, Any]) -> None:
        self.journal.append({"key": key, **record})
        _tally(self.report, record)

    def _cut_stragglers(self) -> bool:
        self.cut_deadline = _straggler_deadline(
            self.cut_deadline, self.report, self.queue, self.in_flight, self.opts
        )
        if self.cut_deadline is None or time.monotonic() < self.cut_deadline or not self.in_flight:
            return False
        self.report.straggler_cut = len(self.in_flight)
        console.print(
            f"[yellow]{self.report.name}: cut {len(self.in_flight)} straggler(s) after "
            f"{self.opts.straggler_wait_s:g} s[/]"
        )
        return True


def _journal_finished(
    in_flight: dict[Future, tuple[str, Any, int]], journal: Journal, report: StageReport
) -> None:
    for fut, (key, _, _) in in_flight.items():
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            journal.append({"key": key, **fut.result()})
            _tally(report, fut.result())


def _straggler_deadline(deadline, report: StageReport, queue, in_flight, opts: RunOptions) -> float | None:
    if deadline is not None or queue or not in_flight or opts.straggler_frac >= 1.0:
        return deadline
    finished = report.ok + report.rejected
    return time.monotonic() + opts.straggler_wait_s if finished > opts.straggler_frac * report.total else None


def _timeout(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _check_failures(n: int, exc: BackendError, journal: Journal, opts: RunOptions) -> None:
    if n >= opts.max_consecutive_failures:
        raise UserError(
            f"{n} requests in a row failed ({exc.kind}): {exc}. The {len(journal.records)} samples "
            f"finished so far are saved in {journal.path}; fix the endpoint and rerun the same command"
        )


def _raise_if_tasks_failed(queue, report: StageReport, journal: Journal) -> None:
    failed = report.total - report.ok - report.rejected - report.straggler_cut
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
