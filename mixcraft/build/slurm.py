"""Slurm: a job array for the tasks, a finalize job after them, and a guard against submitting
the same build twice.

- The launch script is datatrove's, written here with every value that reaches the shell
  quoted (`shlex.quote`): the job name, the paths, the environment line's interpreter path.
- Its preamble activates the environment mixcraft runs in (the venv's `activate`, else its bin
  folder first on PATH), unless `env_command` says how. OUT and that environment must be on a
  file system every node sees.
- No QOS unless asked; the array limit (`%N`) is `--workers` when given, else none.
- A submission records its job ids in OUT/.mixcraft/slurm_jobs.json. Submitting again while
  any of them is queued or running (`squeue`) is refused in one line, so no rank runs twice
  into the same folder.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from datatrove.executor import SlurmPipelineExecutor

from mixcraft.core.outdir import write_atomic
from mixcraft.errors import UserError


def default_env_command() -> str:
    """Activate the environment this mixcraft runs in, on the node."""
    activate = Path(sys.prefix) / "bin" / "activate"
    if activate.is_file():
        return f"source {shlex.quote(str(activate))}"
    return f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:\"$PATH\""


class QuotedSlurmExecutor(SlurmPipelineExecutor):
    """datatrove's Slurm executor with a launch script whose values are shell-quoted."""

    def get_launch_file_contents(self, sbatch_args: dict, run_script: str) -> str:
        lines = [f"#SBATCH --{k}={_directive(v)}" if v not in ("", None) else f"#SBATCH --{k}"
                 for k, v in sbatch_args.items()]
        run = self._quoted(run_script)
        body = textwrap.dedent(f"""
            echo {shlex.quote(f"Starting data processing job {self.job_name}")}
            {self.env_command}
            set -xe
            export PYTHONUNBUFFERED=TRUE
            {run}
            """)
        return "#!/bin/bash\n" + "\n".join(lines) + body


    def _quoted(self, run_script: str) -> str:
        """datatrove's two run lines (a stage's pipeline, its stats merge), paths quoted."""
        if run_script.startswith("merge_stats "):
            stats, out = self.logging_dir.resolve_paths("stats"), self.logging_dir.resolve_paths("stats.json")
            return f"merge_stats {shlex.quote(stats)} -o {shlex.quote(out)}"
        pik = shlex.quote(self.logging_dir.resolve_paths("executor.pik"))
        if self.with_srun:
            return f"srun -l -n {int(self.nodes_per_task)} launch_pickled_pipeline {pik}"
        return f"launch_pickled_pipeline {pik}"


def _directive(value: Any) -> str:
    """An #SBATCH value: sbatch reads these lines itself, so refuse what would break one."""
    text = str(value)
    if any(c in text for c in "\n\r\0"):
        raise UserError(f"Slurm option value {text!r} contains a line break; remove it")
    return text


def slurm_executor(pipeline: list, *, tasks: int, workers: int | None, logging_dir: Path, opts: dict[str, Any],
                   name: str, depends: Any) -> QuotedSlurmExecutor:
    return QuotedSlurmExecutor(
        pipeline, tasks=tasks, workers=workers or -1, logging_dir=str(logging_dir), skip_completed=True,
        time=opts["time"], partition=opts["partition"], cpus_per_task=opts["cpus_per_task"],
        mem_per_cpu_gb=opts["mem_per_cpu_gb"], job_name=f"{opts['job_name']}-{name}",
        env_command=opts["env_command"] or default_env_command(), max_array_size=opts["max_array_size"],
        tasks_per_job=opts["tasks_per_job"], depends=depends, slurm_logs_folder=str(logging_dir / "slurm_logs"),
        qos=opts.get("qos") or "")  # datatrove's default is "normal", which not every cluster has


def refuse_if_queued(record: Path) -> None:
    """One line, exit 2, while a job of this build's last submission is still queued or running."""
    if not record.is_file():
        return
    ids = [str(i) for i in json.loads(record.read_text()).get("job_ids", []) if int(i) > 0]
    if not ids:
        return
    squeue = shutil.which("squeue")
    if squeue is None:
        raise UserError(f"{record}: this build was submitted to Slurm before, and `squeue` is not on PATH to check "
                        "whether its jobs still run; run from a Slurm login node")
    proc = subprocess.run([squeue, "-h", "-o", "%i", "-j", ",".join(ids)], capture_output=True, text=True,
                          timeout=60)
    # squeue exits 1 with "Invalid job id" once every job has left the queue.
    live = sorted({line.split("_")[0].strip() for line in proc.stdout.splitlines() if line.strip()})
    if live:
        raise UserError(f"{record.parent.parent}: Slurm jobs {', '.join(live)} of this build are still queued or "
                        "running; wait for them (squeue) or cancel them (scancel), then re-run to resubmit what did "
                        "not finish")


def record_jobs(record: Path, job_ids: list[int | str | None]) -> None:
    write_atomic(record, json.dumps({"job_ids": [int(i) for i in job_ids if i is not None]}))
