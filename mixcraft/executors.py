"""datatrove executors, configured for mixcraft.

datatrove logs each task at INFO to the console as well as to its log file; under a progress
bar that is noise, so the console copy goes to the task's log folder instead. Errors still
reach the user: an exception in a task is re-raised by the executor.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from datatrove.executor import LocalPipelineExecutor
from loguru import logger


class QuietLocalExecutor(LocalPipelineExecutor):
    def _launch_run_for_rank(self, rank: int, ranks_q, completed=None, completed_lock=None) -> Any:
        console = sys.stderr
        path = os.path.join(self.logging_dir.path, "logs", f"console_{rank:05d}.log")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a") as sink:
            sys.stderr = sink  # datatrove's task logger binds sys.stderr when the task starts
            try:
                return super()._launch_run_for_rank(rank, ranks_q, completed, completed_lock)
            finally:
                logger.remove()  # its handlers point at `sink`, which closes now
                sys.stderr = console

    def run(self) -> Any:
        logger.remove()
        logger.add(os.path.join(self.logging_dir.path, "executor.log"), level="INFO")
        try:
            return super().run()
        finally:
            logger.remove()


def quiet_local_executor(pipeline: list, *, tasks: int, workers: int, logging_dir: str) -> QuietLocalExecutor:
    # "fork" starts workers in milliseconds; datatrove's default "forkserver" re-imports
    # torch and friends in every worker (seconds each).
    return QuietLocalExecutor(pipeline, tasks=tasks, workers=max(1, workers), logging_dir=logging_dir,
                              skip_completed=True, start_method="fork")
