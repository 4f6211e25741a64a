"""code_files' repository shuffle: map tasks over disjoint data files, reduce tasks that sort on
disk; the same documents as in-memory grouping, whatever the map count, buffer sizes or spills."""

from __future__ import annotations

import itertools
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from readerhelp import OpenSpy, peak_rss_mib, read_source, total, write_stack_like

from helpers import reader_config
from mixcraft.core.ledger import Ledger
from mixcraft.readers.code_common import FileRules, RepoFiles, join_repo
from mixcraft.readers.shuffle import partition_of

STACK = {"type": "code_files", "lang_field": "lang"}


def reference_docs(rows: list[dict], cfg: dict, n_parts: int, n_tasks: int) -> list[tuple[str, str, dict]]:
    """Grouping as main did it, all in memory: rows of partition p sorted by (repo, path,
    content); the first copy of a path wins; task t takes partitions t, t+n, ...; the same file
    rules and join."""
    config = reader_config({**STACK, **cfg, "paths": ["x"]})
    parts: dict[int, list[dict]] = {}
    for r in rows:
        parts.setdefault(partition_of(r["max_stars_repo_name"], n_parts), []).append(r)
    docs = []
    for task in range(n_tasks):
        for p in range(task, n_parts, n_tasks):
            ordered = sorted(parts.get(p, []), key=lambda r: (r["max_stars_repo_name"], r["max_stars_repo_path"],
                                                               r["content"]))
            for repo, group in itertools.groupby(ordered, key=lambda r: r["max_stars_repo_name"]):
                rules = FileRules(config, Ledger("ref"))
                files, seen = RepoFiles(config, rules), set()
                for r in group:
                    rel = r["max_stars_repo_path"]
                    if rel in seen or not rules.keep_path(rel, rel):
                        seen.add(rel)
                        continue
                    seen.add(rel)
                    text = rules.content(r["content"], rel)
                    if text is not None:
                        files.add(rel, text, rel, r["lang"])
                if files.files:
                    text, meta = join_repo(files.pairs(), config, files.languages())
                    docs.append((repo, text, meta))
    return docs


@pytest.fixture
def stack(tmp_path):
    rows = write_stack_like(tmp_path / "the-stack", n_repos=40, files_per_repo=6, n_data_files=5)
    return tmp_path / "the-stack", rows


def _docs(docs):
    return [(d.metadata["repo"], d.text, {k: d.metadata[k] for k in ("n_files", "languages", "size_bytes")})
            for d in docs]


def test_grouping_equals_in_memory_grouping_whatever_the_shape(tmp_path, stack, monkeypatch):
    import mixcraft.readers.shuffle as sh

    root, rows = stack
    cfg = {**STACK, "dataset": str(root), "partitions": 4}
    expected = reference_docs(rows, {}, n_parts=4, n_tasks=3)
    assert len(expected) == 40 and any(m["n_files"] > 6 for _, _, m in expected)
    base, base_ledgers = read_source({**cfg, "map_tasks": 1}, tmp_path, n_tasks=3, name="one")
    assert _docs(base) == expected
    # Many map tasks, tiny buffers: chunks per flush, sorted runs spilled and merged in rounds.
    monkeypatch.setattr(sh, "FLUSH_BYTES", 2_000)
    monkeypatch.setattr(sh, "SORT_BYTES", 3_000)
    monkeypatch.setattr(sh, "MERGE_FANIN", 2)
    spilled, ledgers = read_source({**cfg, "map_tasks": 5}, tmp_path, n_tasks=3, name="five")
    assert _docs(spilled) == expected
    assert total(ledgers) == total(base_ledgers)
    assert total(ledgers)["duplicate_path"] == 8 and total(ledgers)["binary"] == 10
    chunks = list((tmp_path / "work" / "five").glob("part-*/m*-c*.parquet"))
    assert len({c.name.split("-c")[0] for c in chunks}) == 5 and len(chunks) > 20
    assert not list((tmp_path / "work" / "five").glob("spill/*/*")), "reduce tasks clean their spill"


def test_map_tasks_open_only_their_own_data_files(tmp_path, monkeypatch):
    from mixcraft.readers import make_reader

    root = tmp_path / "the-stack"  # files over 64 KiB, so a footer read is not the whole file
    write_stack_like(root, n_repos=40, files_per_repo=6, n_data_files=4, content_bytes=4000)
    cfg = reader_config({**STACK, "dataset": str(root), "map_tasks": 2})
    work = tmp_path / "work"
    stage = make_reader("s", cfg, Ledger("s"), work_dir=work).prepare(work, 4)
    assert stage.world_size == 2 and stage.name == "s/code_files_map"
    spy = OpenSpy()
    with spy.installed(monkeypatch):
        for rank in (1, 0):  # any order, as an executor may run them
            spy.task = rank
            list(stage.step(None, rank, 2))
    stage.finish()
    files = sorted(str(p) for p in (root / "data" / "python").glob("*.parquet"))
    assert len(files) == 4 and all(Path(f).stat().st_size > 128 << 10 for f in files)
    assert spy.files_of(0) == set(files[0::2]) and spy.files_of(1) == set(files[1::2])
    # Only the four columns a row needs, not The Stack's thirteen (plus each file's footer, which
    # pyarrow reads with a first guess of 64 KiB).
    needed = footers = 0
    for f in files:
        meta = pq.ParquetFile(f).metadata
        footers += meta.serialized_size + (64 << 10)
        needed += sum(meta.row_group(g).column(c).total_compressed_size for g in range(meta.num_row_groups)
                      for c in range(meta.num_columns) if meta.row_group(g).column(c).path_in_schema in
                      ("max_stars_repo_name", "max_stars_repo_path", "content", "lang"))
    assert sum(spy.bytes.values()) <= needed + footers


def test_a_killed_map_pass_resumes_with_the_ranks_that_did_not_finish(tmp_path, stack, monkeypatch):
    from mixcraft.readers import make_reader
    from mixcraft.readers.code_files import finish_map

    root, rows = stack
    cfg = reader_config({**STACK, "dataset": str(root), "map_tasks": 3})
    work = tmp_path / "work"
    stage = make_reader("s", cfg, Ledger("s"), work_dir=work).prepare(work, 3)
    list(stage.step(None, 0, 3))
    (work / "part-00000").mkdir(exist_ok=True)
    (work / "part-00000" / "m00001-c000000.parquet").write_bytes(b"half a chunk of a killed rank 1")
    with pytest.raises(Exception, match=r"map tasks \[1, 2\] did not finish; re-run the build"):
        finish_map(work)
    spy = OpenSpy()
    with spy.installed(monkeypatch):
        stage = make_reader("s", cfg, Ledger("s"), work_dir=work).prepare(work, 3)
        stage.run_here()
    files = sorted(str(p) for p in (root / "data" / "python").glob("*.parquet"))
    assert spy.files_of(-1) == set(files) - set(files[0::3]), "rank 0 is not redone"
    docs, _ = read_source({**STACK, "dataset": str(root), "map_tasks": 3}, tmp_path, n_tasks=3)
    assert _docs(docs) == reference_docs(rows, {}, n_parts=3, n_tasks=3)


def test_the_map_stage_runs_on_a_datatrove_executor(tmp_path, stack):
    from datatrove.executor import LocalPipelineExecutor

    from mixcraft.readers import make_reader

    root, rows = stack
    cfg = reader_config({**STACK, "dataset": str(root), "map_tasks": 3})
    work = tmp_path / "work"
    stage = make_reader("s", cfg, Ledger("s"), work_dir=work).prepare(work, 2)
    LocalPipelineExecutor(pipeline=[stage.step], tasks=stage.world_size, workers=2,
                          logging_dir=str(tmp_path / "logs")).run()
    stage.finish()
    assert make_reader("s", cfg, Ledger("s"), work_dir=work).prepare(work, 2) is None  # done
    docs = []
    for task in range(2):
        reader = make_reader("s", cfg, Ledger("s"), work_dir=work)
        docs += list(reader.read(task, 2))
    assert _docs(docs) == reference_docs(rows, {}, n_parts=2, n_tasks=2)


def test_a_map_rank_run_with_another_world_size_is_refused(tmp_path, stack):
    from mixcraft.errors import UserError
    from mixcraft.readers import make_reader

    root, _ = stack
    cfg = reader_config({**STACK, "dataset": str(root), "map_tasks": 3})
    stage = make_reader("s", cfg, Ledger("s"), work_dir=tmp_path / "w").prepare(tmp_path / "w", 3)
    with pytest.raises(UserError, match=r"the code_files map pass has 3 tasks, not 2; run it with that many"):
        list(stage.step(None, 0, 2))


def test_repository_cap_applies_in_document_order(tmp_path):
    """README comes first in the document even when its row sorts last; the cap keeps a prefix."""
    root = tmp_path / "rows"
    root.mkdir()
    import json

    rows = [("a/aa.py", "A" * 400), ("b.py", "B" * 400), ("c.py", "C" * 400), ("README", "R" * 300)]
    with open(root / "r.jsonl", "w") as f:
        for path, content in rows:
            f.write(json.dumps({"max_stars_repo_name": "o/r", "max_stars_repo_path": path, "content": content}) + "\n")
    docs, ledgers = read_source({"type": "code_files", "paths": [str(root)], "max_repo_bytes": 1000}, tmp_path)
    assert [h.split(" ---")[0] for h in docs[0].text.split("--- ")[1:]] == ["README", "a/aa.py"]
    assert total(ledgers)["repo_too_large"] == 2


def test_reduce_memory_is_flat_when_a_partition_doubles(tmp_path):
    """Peak RSS of one reduce task over a partition of 1x and 2x the rows, with 4 MiB sort runs;
    the same without spilling grows, which shows the measurement can see the difference."""
    sizes = {}
    for scale in (1, 2):
        root = tmp_path / f"x{scale}"
        write_stack_like(root, n_repos=100 * scale, files_per_repo=30, n_data_files=2, content_bytes=4000,
                         extras=False)
        cfg = {**STACK, "paths": [str(root)], "partitions": 1}
        read_source(cfg, tmp_path, name=f"x{scale}", n_tasks=1)  # map, and a first reduce
        for spill, sort_bytes in (("spill", 4 << 20), ("memory", 1 << 40)):
            code = f"""
import mixcraft.readers.shuffle as sh
sh.SORT_BYTES = {sort_bytes}
from helpers import reader_config
from mixcraft.core.ledger import Ledger
from mixcraft.readers import make_reader
cfg = reader_config({cfg!r})
reader = make_reader("s", cfg, Ledger("s"), work_dir=__import__("pathlib").Path({str(tmp_path / "work" / f"x{scale}")!r}))
n = sum(1 for _ in reader.read(0, 1))
assert n == {100 * scale}, n
"""
            # The least of 3 runs: the allocators' retained pages only ever add to a peak, by up
            # to ~15 MiB from one run to the next here (Arrow's own peak is 25 MiB at both sizes).
            sizes[spill, scale] = min(peak_rss_mib(code) for _ in range(3 if spill == "spill" else 1))
    grown = sizes["memory", 2] - sizes["memory", 1]
    assert grown > 15, f"in memory, the 2x partition should cost more: {sizes}"
    assert sizes["spill", 2] < 1.1 * sizes["spill", 1], sizes


def test_code_files_rows_from_an_fsspec_url(tmp_path):
    import json

    import fsspec

    fs = fsspec.filesystem("memory")
    rows = [{"max_stars_repo_name": f"o/r{i % 3}", "max_stars_repo_path": f"m{i}.py", "content": f"X = {i}\n"}
            for i in range(9)]
    for k in range(2):
        fs.pipe(f"/stack-bucket/part{k}.jsonl", "".join(json.dumps(r) + "\n" for r in rows[k::2]).encode())
    try:
        docs, _ = read_source({"type": "code_files", "paths": ["memory://stack-bucket"], "map_tasks": 2},
                              tmp_path, n_tasks=2)
    finally:
        fs.rm("/stack-bucket", recursive=True)
    assert sorted((d.metadata["repo"], d.metadata["n_files"]) for d in docs) == [("o/r0", 3), ("o/r1", 3), ("o/r2", 3)]
