"""datatrove executors, configured for mixcraft: `local`, `ray` and `slurm` (`--executor`).

All three run the same pipeline of one mixcraft step over the same task plan, and mark each
finished task in `<logging_dir>/completions/`, so a re-run skips what is done (`skip_completed`).

- local: datatrove's LocalPipelineExecutor with its `run` replaced: its pool workers and
  Manager process outlive a parent killed with SIGKILL (measured: they finish their task and
  write its completion marker into the folder a re-run is already using); ours run each task in
  a process forked for it, which dies with the parent, and whose console output goes to the
  task's log file, so it does not tear through the progress bars.
- ray: datatrove's RayPipelineExecutor on the cluster at `address` (or a local one it starts).
- slurm: datatrove's SlurmPipelineExecutor; `run` submits a job array with sbatch and returns.

Executor settings come from `--executor-opt KEY=VALUE` (see `OPTIONS`); they never change the
output, so they are not part of the recipe.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datatrove.executor import LocalPipelineExecutor
from datatrove.utils.stats import PipelineStats
from loguru import logger

from mixcraft.build.slurm import slurm_executor
from mixcraft.errors import UserError

EXECUTORS = ("local", "ray", "slurm")
# Per executor: option -> (type, default, help). Defaults follow datatrove's.
OPTIONS: dict[str, dict[str, tuple[type, Any, str]]] = {
    "local": {},
    "ray": {
        "address": (str, None, "Ray cluster address (default: RAY_ADDRESS, else start a local instance)"),
        "cpus_per_task": (int, 1, "CPUs reserved per task"),
        "mem_per_cpu_gb": (float, 2.0, "memory reserved per CPU, GB"),
        "tasks_per_job": (int, 0, "build tasks one Ray task runs in one process (0: about 4 rounds per worker)"),
    },
    "slurm": {
        "partition": (str, None, "Slurm partition (required)"),
        "time": (str, "24:00:00", "time limit per array task"),
        "cpus_per_task": (int, 1, "CPUs per task (tokenization uses one)"),
        "mem_per_cpu_gb": (int, 4, "memory per CPU, GB (a 512K-row task peaks under 2 GB)"),
        "qos": (str, None, "Slurm QOS (default: the partition's)"),
        "tasks_per_job": (int, 1, "build tasks one array job runs in one process (pays start-up once)"),
        "job_name": (str, "mixcraft", "job name prefix"),
        "env_command": (str, None, "shell line that sets up Python on the node (default: put this "
                        "interpreter's bin folder first on PATH)"),
        "max_array_size": (int, 1001, "largest job array the cluster accepts"),
    },
}


@dataclass(frozen=True)
class ExecutorOptions:
    """Where tasks run (`--executor`) and that executor's settings (`--executor-opt`)."""

    kind: str = "local"
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, kind: str, raw: list[str]) -> ExecutorOptions:
        return cls(kind, parse_executor_opts(kind, raw))


def parse_executor_opts(kind: str, raw: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings -> typed options for executor `kind`, defaults filled in."""
    if kind not in EXECUTORS:
        raise UserError(f"--executor {kind!r}: expected one of {', '.join(EXECUTORS)}")
    schema = OPTIONS[kind]
    opts = {k: default for k, (_, default, _) in schema.items()}
    for item in raw:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in schema:
            allowed = ", ".join(schema) or "none"
            raise UserError(f"--executor-opt {item!r}: expected KEY=VALUE with KEY one of the {kind} options "
                            f"({allowed})")
        typ = schema[key][0]
        try:
            opts[key] = typ(value)
        except ValueError:
            raise UserError(f"--executor-opt {item!r}: {key} expects {typ.__name__}, got {value!r}") from None
    if kind == "slurm" and not opts["partition"]:
        raise UserError("--executor slurm needs a partition: add --executor-opt partition=NAME")
    return opts


def die_with_parent(parent_pid: int) -> None:
    """End this worker process when its parent dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    else:  # no prctl: poll the parent id once a second
        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(1)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


class LocalExecutor(LocalPipelineExecutor):
    """LocalPipelineExecutor whose workers die with the build process (see the module doc)."""

    def run(self) -> PipelineStats | None:
        ranks = self.get_incomplete_ranks(range(self.tasks))
        if not ranks:
            return None
        self._launched = True
        logger.remove()
        logger.add(os.path.join(self.logging_dir.path, "executor.log"), level="INFO")
        try:
            self.save_executor_as_json()
            total = sum(self._run_forked(ranks), start=PipelineStats())
            with self.logging_dir.open("stats.json", "wt") as f:
                total.save_to_disk(f)
            return total
        finally:
            logger.remove()

    def _run_forked(self, ranks: list[int]) -> list[PipelineStats]:
        """The tasks on `workers` processes forked from this one; each runs task after task.

        "fork": a worker starts in milliseconds and inherits the imports and the tokenizer this
        process loaded, so start-up is paid once per build, not once per task (a task of a few
        documents costs milliseconds, so a recipe may declare thousands). A worker frees each
        task's data before the next, so its memory is the largest task's, not their sum. The
        first failure stops the build: the workers are killed, and its exception is raised here."""
        import multiprocess
        from multiprocess.connection import wait

        ctx, parent = multiprocess.get_context("fork"), os.getpid()
        todo, stats, error = list(ranks), [], None
        workers: dict = {}  # result pipe -> (task pipe, process, rank running or None)
        try:
            for _ in range(min(self.workers, len(todo))):
                tasks_recv, tasks_send = ctx.Pipe(duplex=False)
                results_recv, results_send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=self._worker, args=(tasks_recv, results_send, parent))
                proc.start()
                tasks_recv.close()
                results_send.close()
                workers[results_recv] = [tasks_send, proc, None]
            for w in workers.values():
                w[2] = todo.pop(0) if todo else None
                w[0].send(w[2])
            while any(w[2] is not None for w in workers.values()):
                for conn in wait([c for c, w in workers.items() if w[2] is not None]):
                    w = workers[conn]
                    try:
                        kind, payload = conn.recv()
                    except EOFError:  # killed, or crashed in C code
                        kind, payload = "error", RuntimeError(
                            f"build task {w[2]} died (exit code {w[1].exitcode}); its log: "
                            f"{self.logging_dir.path}/logs/task_{w[2]:05d}.log")
                    if kind == "ok":
                        stats.append(payload)
                    elif error is None:
                        error = payload
                    w[2] = todo.pop(0) if todo and error is None else None
                    if w[1].is_alive():
                        w[0].send(w[2])
            if error is not None:
                raise error
            return stats
        finally:
            for _, proc, _ in workers.values():
                proc.kill()
                proc.join()

    def _worker(self, tasks, results, parent: int) -> None:
        """Run the ranks sent on `tasks` until None comes; each task's console output goes to its
        log file. Exits without interpreter teardown: the OS frees the memory anyway."""
        die_with_parent(parent)
        while (rank := tasks.recv()) is not None:
            try:
                path = os.path.join(self.logging_dir.path, "logs", f"console_{rank:05d}.log")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "a") as sink:
                    os.dup2(sink.fileno(), 2)
                sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115 (datatrove's task logger writes here)
                results.send(("ok", self._run_for_rank(rank)))
            except BaseException as exc:  # sent to the parent, which raises it
                results.send(("error", exc))
        results.close()
        os._exit(0)


def local_cpus() -> int:
    """CPUs this process may use (its affinity mask, which a cgroup or taskset narrows)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def make_executor(options: ExecutorOptions, pipeline: list, *, tasks: int, workers: int | None, logging_dir: Path,
                  name: str = "mixcraft", depends: Any = None):
    """A datatrove executor of `options.kind` over `tasks` tasks, at most `workers` at once.
    `workers=None` takes what is there: local CPUs, the Ray cluster's CPUs, no Slurm array limit."""
    kind = options.kind
    opts = options.settings or parse_executor_opts(kind, [])
    if kind == "local":
        n = min(workers or local_cpus(), tasks)
        return LocalExecutor(pipeline, tasks=tasks, workers=max(1, n), logging_dir=str(logging_dir),
                             skip_completed=True)
    if kind == "ray":
        return ray_executor(pipeline, tasks=tasks, workers=workers, logging_dir=logging_dir, opts=opts)
    return slurm_executor(pipeline, tasks=tasks, workers=workers, logging_dir=logging_dir, opts=opts, name=name,
                          depends=depends)


def ray_executor(pipeline: list, *, tasks: int, workers: int | None, logging_dir: Path, opts: dict[str, Any]):
    try:
        import ray
        from datatrove.executor.ray import RayPipelineExecutor
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install 'mixcraft[ray]' (then re-run)") from None
    if not ray.is_initialized():
        # Workers must import this mixcraft, also when it runs from a source checkout.
        root = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        ray.init(address=opts["address"], runtime_env={"env_vars": {"PYTHONPATH": path}},
                 log_to_driver=False, configure_logging=False)
    if workers is None:  # every CPU of the cluster, one task per `cpus_per_task`
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)) // opts["cpus_per_task"])
    per_job = opts["tasks_per_job"] or max(1, tasks // (4 * workers))
    return RayPipelineExecutor(pipeline, tasks=tasks, workers=max(1, min(workers, tasks)),
                               logging_dir=str(logging_dir), skip_completed=True, cpus_per_task=opts["cpus_per_task"],
                               mem_per_cpu_gb=opts["mem_per_cpu_gb"], tasks_per_job=per_job)
