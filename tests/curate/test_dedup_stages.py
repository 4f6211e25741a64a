"""The dedup stages (curate/dedup.py): the same verdicts as the single-process dedup they
replaced, whatever the workers, tasks or memory budget; the documented difference on chains;
resume after a kill; the plan `--dry-run` prints."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pydoc_data.topics import topics

from dedupcorpus import PROSE, REPO, chain, copies_corpus, peer, stages, verdicts, write_recipe

from mixcraft.build.load import load_recipe
from mixcraft.core.outdir import OutLayout
from mixcraft.curate.dedup import dedup_stages


def _dropped(found: dict) -> dict[str, list[str]]:
    return {name: sorted(v) for name, v in found.items() if v}


def test_same_verdicts_as_the_single_process_dedup(tmp_path):
    recipe = write_recipe(tmp_path, copies_corpus())
    new, old = stages(recipe, tmp_path / "new"), peer(recipe, tmp_path / "old")
    assert new == old
    reasons = sorted(r for v in new.values() for r, _ in v.values())
    # exact: a-again (across tasks), f-a (across sources), f-short (no n-gram: exact only),
    # f-near-b-again (a copy of a near copy); near: f-near-b (across sources), f-near-c (across
    # tasks); the empty text has no copy
    assert reasons == ["exact_duplicate"] * 4 + ["near_duplicate"] * 2, new
    assert OutLayout(tmp_path / "new").dedup_work.exists() is False  # scratch deleted when done


def test_limit_reads_what_the_build_tasks_read(tmp_path):
    """`--limit 5`: at most 3 + 2 documents of each source (tasks 0 and 1), as the build tasks
    read them; forum's f-d and f-near-b-again (an exact copy) are never read."""
    recipe = write_recipe(tmp_path, copies_corpus())
    new, old = stages(recipe, tmp_path / "new", limit=5), peer(recipe, tmp_path / "old", limit=5)
    assert new == old
    # web: a, short (task 0), b, a-again (1); forum: f-a, f-c, f-short (0), f-near-b, f-near-c (1)
    assert new == {"forum/00000.json": {"0": ["exact_duplicate", "web:a0"], "2": ["exact_duplicate", "web:short0"]},
                   "forum/00001.json": {"0": ["near_duplicate", "web:b0"], "1": ["near_duplicate", "forum:f-c0"]},
                   "web/00000.json": {}, "web/00001.json": {"1": ["exact_duplicate", "web:a0"]}}


def test_a_chain_is_dropped_whole_where_the_old_index_kept_its_end(tmp_path):
    """A ~ B ~ C, C not similar to A: the old index compared C with kept documents only (A), so
    it kept C; the stages compare with every earlier document, so C is a near copy of B."""
    a, b, c = chain(topics[PROSE[0]])
    recipe = write_recipe(tmp_path, {"web": [("A", a), ("B", b), ("C", c)]}, tasks=1, files=1)
    new, old = stages(recipe, tmp_path / "new"), peer(recipe, tmp_path / "old")
    assert old == {"web/00000.json": {"1": ["near_duplicate", "web:A"]}}
    assert new == {"web/00000.json": {"1": ["near_duplicate", "web:A"], "2": ["near_duplicate", "web:B"]}}


def test_verdicts_do_not_depend_on_workers_or_shuffle_tasks(tmp_path):
    corpus = copies_corpus(scale=2)
    reference = stages(write_recipe(tmp_path / "a", corpus), tmp_path / "a" / "out", workers=1)
    assert _dropped(reference), "the corpus has no copies"
    # 16 shuffle tasks: 16 exact partitions, 14 bands x 2 hash ranges
    wide = write_recipe(tmp_path / "b", corpus, dedup="{exact: true, minhash: {threshold: 0.8}, tasks: 16}")
    assert dict(dedup_stages(wide))["minhash_buckets"] == 28
    assert stages(wide, tmp_path / "b" / "out", workers=2) == reference
    one = write_recipe(tmp_path / "c", corpus, dedup="{exact: true, minhash: {threshold: 0.8}, tasks: 1}")
    assert stages(one, tmp_path / "c" / "out", workers=2) == reference


def test_a_tiny_memory_budget_still_completes_on_a_larger_input(tmp_path):
    """Every buffer that grows with the input spills at `budget_bytes`: with 200 bytes (two
    band records) a task holds almost nothing, and the verdicts are the same."""
    recipe = write_recipe(tmp_path, copies_corpus(scale=6))
    reference = stages(recipe, tmp_path / "ref")
    tiny = stages(recipe, tmp_path / "tiny", budget_bytes=200)
    assert tiny == reference and len(_dropped(reference)) >= 2
    stats = OutLayout(tmp_path / "tiny").dedup_logs("task_stats")
    runs = sum(json.loads(p.read_text())["run_files"] for p in stats.glob("dedup_signatures/*.json"))
    docs = sum(json.loads(p.read_text())["docs"] for p in stats.glob("dedup_signatures/*.json"))
    assert runs >= 14 * docs // 2, (runs, docs)  # a run file per band about every 2 documents


KILLED_RUN = """
import sys, time
from pathlib import Path
from mixcraft.build.load import load_recipe
from mixcraft.build.prepare import run_dedup
from mixcraft.core.outdir import OutLayout
from mixcraft.curate import dedup_steps

real = dedup_steps.MinhashBuckets.run_task
def slow(self, rank):  # task 0 finishes; task 1 does its work, then hangs until killed
    out = real(self, rank)
    if rank >= 1:
        time.sleep(600)
    return out
dedup_steps.MinhashBuckets.run_task = slow
run_dedup(load_recipe(sys.argv[1]), OutLayout(Path(sys.argv[2])), limit=None, workers=1)
"""


def test_a_killed_dedup_resumes_and_ends_the_same(tmp_path):
    recipe = write_recipe(tmp_path, copies_corpus())
    reference = stages(recipe, tmp_path / "ref")
    out = tmp_path / "out"
    layout = OutLayout(out)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(recipe.path), str(out)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
    done_buckets = layout.dedup_logs("minhash_buckets") / "completions"
    try:
        deadline = time.monotonic() + 60
        while not (done_buckets / "00000").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before the kill"
            time.sleep(0.2)
        time.sleep(0.5)  # task 1 is writing or hanging
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (layout.dedup_dir / "done.json").exists() and not (done_buckets / "00001").exists()
    signed = {p: p.stat().st_mtime_ns for p in layout.dedup_logs("task_stats").glob("dedup_signatures/*")}
    assert len(signed) == 4
    assert stages(recipe, out) == reference
    assert {p: p.stat().st_mtime_ns for p in signed} == signed  # finished stages were not redone


def test_the_plan_names_each_stage_and_the_run_follows_it(tmp_path):
    demo = load_recipe(REPO / "recipes" / "demo.yaml")
    assert dedup_stages(demo) == [("dedup_signatures", 6), ("exact_partitions", 6), ("minhash_buckets", 14),
                                  ("dedup_verdicts", 6)]
    recipe = write_recipe(tmp_path, copies_corpus(), tasks=3, dedup="{exact: true}")
    assert dedup_stages(recipe) == [("dedup_signatures", 6), ("exact_partitions", 6), ("dedup_verdicts", 6)]
    found = stages(recipe, tmp_path / "out", workers=2)
    assert sorted(r for v in found.values() for r, _ in v.values()) == ["exact_duplicate"] * 4
    for name, tasks in dedup_stages(recipe):
        done = OutLayout(tmp_path / "out").dedup_logs(name) / "completions"
        assert len(list(done.iterdir())) == tasks, name
    assert dedup_stages(write_recipe(tmp_path / "none", copies_corpus(), dedup="null")) == []


def test_a_rerun_of_a_finished_dedup_reads_nothing(tmp_path):
    recipe = write_recipe(tmp_path, copies_corpus())
    first = stages(recipe, tmp_path / "out")
    for path in tmp_path.glob("*.jsonl"):
        path.write_text("")  # a re-run that read anything would now find no copies
    assert stages(recipe, tmp_path / "out") == first
    assert verdicts(tmp_path / "out") == first
