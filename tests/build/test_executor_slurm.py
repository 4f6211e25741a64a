"""`--executor slurm`: the sbatch scripts mixcraft submits, checked without a cluster.

A fake `sbatch` on PATH records each script and its arguments and answers like the real one;
a fake `scontrol` names the node. The submitted array tasks and the finalize job are then run
the way a Slurm node would (datatrove's `launch_pickled_pipeline`: load executor.pik, run it
with SLURM_ARRAY_TASK_ID set), and the result must match the local reference build byte for byte."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from buildhelp import cli_env, output_hashes
from slurmhelp import fake_slurm_bin, run_like_a_node

from mixcraft.build.load import load_recipe
from mixcraft.build.plan import plan_tasks
from mixcraft.build.slurm import default_env_command
from mixcraft.core.outdir import WORK_DIR


def _run_like_a_node(pik: Path, array_ids: range, bin_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")  # scontrol
    run_like_a_node(pik, array_ids, monkeypatch)


def _submit(cmd, env) -> str:
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_slurm_scripts_resubmission_and_a_simulated_cluster_run(reference, recipe_path, tmp_path, monkeypatch):
    _, want = reference
    bin_dir = fake_slurm_bin(tmp_path)
    log = tmp_path / "sbatch-log"
    log.mkdir()
    out = tmp_path / "out"
    work = out / WORK_DIR / "datatrove"
    env = cli_env() | {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SBATCH_LOG": str(log)}
    cmd = [sys.executable, "-m", "mixcraft", "build", str(recipe_path), "--out", str(out), "--workers", "2",
           "--executor", "slurm", "--executor-opt", "partition=cpu", "--executor-opt", "time=01:30:00",
           "--executor-opt", "cpus_per_task=2"]
    stdout = _submit(cmd, env)
    assert "submitted Slurm job 1000" in stdout and "job 1002 writes" in stdout

    # Four submissions: the build array, its stats merge, finalize (after the array), its stats merge.
    jobs = sorted(log.iterdir())
    assert [j.name for j in jobs] == ["1000", "1001", "1002", "1003"]
    n_tasks = len(plan_tasks(load_recipe(recipe_path)))
    script = (jobs[0] / "script").read_text()
    for line in ("#SBATCH --partition=cpu", "#SBATCH --time=01:30:00", "#SBATCH --cpus-per-task=2",
                 "#SBATCH --mem-per-cpu=4G", f"#SBATCH --array=0-{n_tasks - 1}%2", "#SBATCH --job-name=mixcraft-tiny",
                 default_env_command(), "echo 'Starting data processing job mixcraft-tiny'",
                 f"launch_pickled_pipeline {work / 'executor.pik'}"):
        assert line in script, f"{line!r} not in the sbatch script:\n{script}"
    assert script == (work / "launch_script.slurm").read_text()
    assert "--dependency" not in (jobs[0] / "args").read_text()
    assert "--dependency=afterok:1000" in (jobs[2] / "args").read_text()
    fin_script = (jobs[2] / "script").read_text()
    assert "#SBATCH --array=0-0" in fin_script and "datatrove-finalize/executor.pik" in fin_script
    assert "qos" not in script
    assert not (out / "manifest.json").exists()

    # While the first submission's jobs are queued, a second submission is refused in one line.
    refused = subprocess.run(cmd, env=env | {"SQUEUE_LIVE": "1000 1002"}, capture_output=True, text=True)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.splitlines() == [f"error: {out}: Slurm jobs 1000, 1002 of this build are still queued or "
                                           "running; wait for them (squeue) or cancel them (scancel), then re-run to "
                                           "resubmit what did not finish"]
    assert len(list(log.iterdir())) == 4, "nothing was submitted"

    # The cluster runs three array tasks, then the job dies; re-running the command submits
    # the rest only, and a new finalize job after them.
    _run_like_a_node(work / "executor.pik", range(3), bin_dir, monkeypatch)
    stdout = _submit(cmd, env)
    assert "submitted Slurm job 1004" in stdout and "job 1006 writes" in stdout
    assert json.loads((work / "ranks_to_run.json").read_text()) == list(range(3, n_tasks))
    assert f"#SBATCH --array=0-{n_tasks - 4}%2" in (log / "1004" / "script").read_text()
    assert "--dependency=afterok:1004" in (log / "1006" / "args").read_text()

    # The rest of the array and the finalize job, as nodes would run them: then the output
    # must equal the local build's, and a further re-run has nothing to submit.
    _run_like_a_node(work / "executor.pik", range(n_tasks - 3), bin_dir, monkeypatch)
    _run_like_a_node(out / WORK_DIR / "datatrove-finalize" / "executor.pik", range(1), bin_dir, monkeypatch)
    assert output_hashes(out) == want
    assert "the build is complete; nothing to submit" in _submit(cmd, env)
    assert len(list(log.iterdir())) == 8


def test_a_hostile_job_name_never_reaches_the_shell(recipe_path, tmp_path):
    """Every value in the launch script is quoted: running the script runs no injected command."""
    bin_dir = fake_slurm_bin(tmp_path)
    for stub in ("srun", "launch_pickled_pipeline"):
        (bin_dir / stub).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / stub).chmod(0o755)
    log = tmp_path / "sbatch-log"
    log.mkdir()
    pwned = tmp_path / "pwned"
    hostile = f'x"; touch {pwned}; echo "'
    env = cli_env() | {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SBATCH_LOG": str(log)}
    cmd = [sys.executable, "-m", "mixcraft", "build", str(recipe_path), "--out", str(tmp_path / "out"),
           "--executor", "slurm", "--executor-opt", "partition=cpu", "--executor-opt", f"job_name={hostile}"]
    _submit(cmd, env)
    script = next(log.iterdir()) / "script"
    subprocess.run(["bash", str(script)], env=env, capture_output=True, timeout=60)
    assert not pwned.exists(), script.read_text()


def test_the_repository_shuffle_runs_as_jobs_before_the_tasks(tmp_path, monkeypatch):
    """A code_files source on Slurm: its map stage is an array, its finish a job after it, and the
    build's task array depends on that; run like nodes, the output equals a local build's."""
    import yaml
    from readerhelp import write_stack_like

    data = tmp_path / "stack"
    write_stack_like(data, n_repos=12, files_per_repo=5, n_data_files=3)
    recipe = tmp_path / "code.yaml"
    recipe.write_text(yaml.safe_dump({"name": "code", "seq_len": 256, "sources": [
        {"name": "code", "reader": {"type": "code_files", "paths": [str(data)], "map_tasks": 3}, "proportion": 1.0,
         "tasks": 2}]}))
    local = tmp_path / "local"
    assert subprocess.run([sys.executable, "-m", "mixcraft", "build", str(recipe), "--out", str(local)],
                          env=cli_env(), capture_output=True, text=True).returncode == 0
    bin_dir, log, out = fake_slurm_bin(tmp_path), tmp_path / "sbatch-log", tmp_path / "out"
    log.mkdir()
    env = cli_env() | {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SBATCH_LOG": str(log)}
    _submit([sys.executable, "-m", "mixcraft", "build", str(recipe), "--out", str(out), "--executor", "slurm",
             "--executor-opt", "partition=cpu"], env)
    scripts = {j.name: (j / "script").read_text() for j in sorted(log.iterdir())}
    map_pik = next((out / WORK_DIR / "datatrove-prepare").glob("**/code_files_map/executor.pik"))
    finish_pik = next((out / WORK_DIR / "datatrove-prepare").glob("**/finish/executor.pik"))
    assert any(str(map_pik) in s for s in scripts.values()) and any(str(finish_pik) in s for s in scripts.values())
    assert not (out / WORK_DIR / "prepare" / "code" / "done.json").exists(), "nothing ran on the submitting node"
    _run_like_a_node(map_pik, range(3), bin_dir, monkeypatch)
    _run_like_a_node(finish_pik, range(1), bin_dir, monkeypatch)
    _run_like_a_node(out / WORK_DIR / "datatrove" / "executor.pik", range(2), bin_dir, monkeypatch)
    _run_like_a_node(out / WORK_DIR / "datatrove-finalize" / "executor.pik", range(1), bin_dir, monkeypatch)
    assert output_hashes(out) == output_hashes(local)
