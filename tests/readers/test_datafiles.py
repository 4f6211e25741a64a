"""Datasets read by data file: each task opens only its own files, `where` is pushed into the
Parquet scan, inputs come through fsspec (memory://, file://), a hub-like folder resolves like
the hub."""

from __future__ import annotations

import json
import random
import string
from collections import Counter
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from readerhelp import OpenSpy, read_source, total

from helpers import reader_config

SETS = ["RedPajamaBook", "RedPajamaC4", "RedPajamaCommonCrawl", "RedPajamaWikipedia"]


def _hub_repo(root: Path, n_files: int, rows_per_file: int = 40, row_group_size: int | None = None,
              text_chars: int = 0) -> list[dict]:
    """A folder laid out like a hub dataset repository: README with a config, data/ Parquet
    shards named as `datasets` writes them, SlimPajama's nested `meta` column. `text_chars`:
    that many random letters in each text besides (files of real size, not compressed away)."""
    rng = random.Random(0)
    (root / "data").mkdir(parents=True)
    (root / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n"
                                    "  - split: train\n    path: data/train-*.parquet\n---\n# a dataset\n")
    rows = []
    for f in range(n_files):
        part = [{"id": f"f{f}r{r}", "text": f"record {r} of file {f}. " * 20
                 + "".join(rng.choices(string.ascii_letters, k=text_chars)),
                 "meta": {"redpajama_set_name": SETS[(f + r) % len(SETS)]}} for r in range(rows_per_file)]
        pq.write_table(pa.Table.from_pylist(part), root / "data" / f"train-{f:05d}-of-{n_files:05d}.parquet",
                       row_group_size=row_group_size)
        rows += part
    return rows


@pytest.mark.parametrize("n_files,n_tasks", [(5, 3), (2, 4), (6, 2)])
def test_each_task_opens_only_its_own_files_whatever_the_shard_count(tmp_path, monkeypatch, n_files, n_tasks):
    rows = _hub_repo(tmp_path / "hub", n_files)
    spy = OpenSpy()
    with spy.installed(monkeypatch):
        docs, ledgers = read_source({"type": "hf", "dataset": str(tmp_path / "hub")}, tmp_path,
                                    n_tasks=n_tasks, spy=spy)
    assert sorted(d.id for d in docs) == sorted(r["id"] for r in rows)  # every record exactly once
    per_task = [spy.files_of(t) for t in range(n_tasks)]
    assert sum(len(files) for files in per_task) == n_files, "each file is opened by exactly one task"
    assert set().union(*per_task) == {str(p) for p in (tmp_path / "hub" / "data").glob("*.parquet")}
    for a in range(n_tasks):
        for b in range(a + 1, n_tasks):
            assert not per_task[a] & per_task[b], f"tasks {a} and {b} both opened a file"
    assert [len(f) for f in per_task] == [len(range(t, n_files, n_tasks)) for t in range(n_tasks)]
    assert sum(led.docs_read for led in ledgers) == len(rows)


def test_fewer_files_than_tasks_are_cut_into_row_group_ranges(tmp_path, monkeypatch):
    """2 files of 5 row groups, 6 tasks: 3 pieces a file, every task gets input, each reads its
    own row groups (not the whole file), and every record keeps the id and the `where` (file
    and row number) it has when the file is read whole."""
    rows = _hub_repo(tmp_path / "hub", 2, rows_per_file=50, row_group_size=10, text_chars=20_000)
    whole, _ = read_source({"type": "hf", "dataset": str(tmp_path / "hub")}, tmp_path, name="whole")
    spy = OpenSpy()
    with spy.installed(monkeypatch):
        docs, ledgers = read_source({"type": "hf", "dataset": str(tmp_path / "hub")}, tmp_path, n_tasks=6,
                                    name="cut", spy=spy)
    assert sorted((d.id, d.metadata["where"]) for d in docs) == sorted((d.id, d.metadata["where"]) for d in whole)
    assert sorted(d.id for d in docs) == sorted(r["id"] for r in rows)
    assert [led.docs_read for led in ledgers] == [20, 20, 10, 20, 20, 10]  # row groups 0-1, 2-3, 4 of each file
    size = min(p.stat().st_size for p in (tmp_path / "hub" / "data").glob("*.parquet"))
    for task in range(6):
        assert len(spy.files_of(task)) == 1
        # its row groups (at most 2 of 5) and the footer (pyarrow's first guess: the last 64 KiB)
        assert sum(n for (t, _), n in spy.bytes.items() if t == task) < 0.6 * size, "a task read another's row groups"
    saved = json.loads((tmp_path / "work" / "cut" / "datafiles.json").read_text())
    assert saved["tasks"] == 6 and [f["row_groups"] for f in saved["files"]] == [[0, 2], [2, 4], [4, 5]] * 2
    assert saved["files"][0]["key"] == "data/train-00000-of-00002.parquet#row_groups=0-2"  # below the dataset folder


def test_the_cut_follows_the_task_count(tmp_path):
    from mixcraft.readers.datafiles import save_dataset_files

    _hub_repo(tmp_path / "hub", 2, rows_per_file=50, row_group_size=10)
    cfg = reader_config({"type": "hf", "dataset": str(tmp_path / "hub")}, tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    assert len(save_dataset_files(cfg, work, 4).units) == 4
    assert [u.row_groups for u in save_dataset_files(cfg, work, 2).units] == [None, None]  # a file per task
    assert len(save_dataset_files(cfg, work, 10).units) == 10  # 5 pieces a file: one row group each


def test_where_is_pushed_into_the_parquet_scan(tmp_path, monkeypatch):
    """Rows sorted by subset, as SlimPajama's chunks cluster them: row groups of other subsets
    are skipped from their statistics, so their text is never read."""
    rng = random.Random(0)
    rows = [{"id": f"r{i}", "text": "".join(rng.choices(string.ascii_letters + " ", k=4000)),
             "meta": {"redpajama_set_name": SETS[i // 250]}} for i in range(1000)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "sp.parquet", row_group_size=100)
    size = (tmp_path / "sp.parquet").stat().st_size
    where = {"meta.redpajama_set_name": "RedPajamaBook"}
    results = {}
    for name, extra in (("all", {}), ("books", {"where": where})):
        spy = OpenSpy()
        with spy.installed(monkeypatch):
            docs, (ledger,) = read_source({"type": "text", "paths": [str(tmp_path / "sp.parquet")], **extra},
                                          tmp_path, name=name, spy=spy)
        results[name] = (docs, ledger, sum(spy.bytes.values()))
    docs, ledger, read_bytes = results["books"]
    assert [d.id for d in docs] == [f"r{i}" for i in range(250)]
    assert ledger.notes["not_selected"] == 750 and ledger.docs_read == 250
    assert results["all"][2] > 0.9 * size  # reading everything reads the file
    # Books are rows 0-249: row groups 0-2 of 10 hold some (2 has both subsets), the other 7
    # are ruled out by their min/max statistics; pyarrow also reads the footer (its metadata,
    # after a first 64 KiB guess).
    meta = pq.ParquetFile(tmp_path / "sp.parquet").metadata
    chunks = sum(meta.row_group(g).column(c).total_compressed_size for g in range(3) for c in range(meta.num_columns))
    assert chunks < 0.32 * size
    assert read_bytes <= chunks + meta.serialized_size + (64 << 10), f"where read {read_bytes} of {size} bytes"


def test_where_on_mixed_row_groups_matches_python_semantics(tmp_path):
    """Within a row group the mask comes from the `where` column alone; the result equals the
    record-by-record filter, including nulls, missing parents and a value of another type."""
    rows = [{"id": f"r{i}", "text": f"t{i}", "n": i % 3,
             "meta": None if i % 7 == 0 else {"set": SETS[i % 4]}} for i in range(60)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "m.parquet", row_group_size=16)
    cases = [({"meta.set": "RedPajamaC4"}, lambda r: r["meta"] and r["meta"]["set"] == "RedPajamaC4"),
             ({"n": 1, "meta.set": "RedPajamaBook"}, lambda r: r["n"] == 1 and r["meta"] and
              r["meta"]["set"] == "RedPajamaBook"),
             ({"n": "1"}, lambda r: False),  # "1" != 1 in Python, and so here
             ({"meta.absent": "x"}, lambda r: False),
             ({"n": 2.0}, lambda r: r["n"] == 2)]
    for i, (where, keep) in enumerate(cases):
        docs, (ledger,) = read_source({"type": "text", "paths": [str(tmp_path / "m.parquet")], "where": where},
                                      tmp_path, name=f"c{i}")
        expected = [r["id"] for r in rows if keep(r)]
        assert [d.id for d in docs] == expected, where
        assert ledger.notes["not_selected"] == 60 - len(expected)


def test_parquet_reads_only_the_needed_columns(tmp_path):
    """A wide table (The Stack carries ~20 columns): the text reader asks for text and id only."""
    from mixcraft.core.ledger import Ledger
    from mixcraft.core.records import iter_parquet

    wide = {"text": ["a", "b"], "id": ["x", "y"], **{f"c{i}": [i, i] for i in range(20)}}
    pq.write_table(pa.table(wide), tmp_path / "w.parquet")
    got = list(iter_parquet(tmp_path / "w.parquet", Ledger("s"), columns=["text", "id", "nope"]))
    assert got == [(1, {"text": "a", "id": "x"}), (2, {"text": "b", "id": "y"})]


def test_memory_and_file_urls_read_like_local_paths(tmp_path):
    fs = fsspec.filesystem("memory")
    lines = "".join(json.dumps({"id": f"m{i}", "text": f"memory text {i}"}) + "\n" for i in range(4))
    fs.pipe("/bucket/docs/a.jsonl", lines.encode())
    fs.pipe("/bucket/docs/sub/b.jsonl", lines.replace('"m', '"n').encode())
    fs.pipe("/bucket/docs/readme.md", b"not data")
    fs.pipe("/bucket/docs/notes.txt", b"A plain text file is one document.\n")
    try:
        docs, (ledger,) = read_source({"type": "text", "paths": ["memory://bucket/docs"]}, tmp_path)
        assert sorted(d.id for d in docs) == ["m0", "m1", "m2", "m3", "n0", "n1", "n2", "n3", "src/notes"]
        assert ledger.notes == {"unsupported_format": 1}
        docs, _ = read_source({"type": "text", "paths": ["memory://bucket/docs/*.jsonl"]}, tmp_path, name="g")
        assert [d.id for d in docs] == ["m0", "m1", "m2", "m3"]
    finally:
        fs.rm("/bucket", recursive=True)
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "a.jsonl").write_text(lines)
    docs, _ = read_source({"type": "text", "paths": [f"file://{tmp_path}/local/*.jsonl"]}, tmp_path, name="f")
    assert [d.id for d in docs] == ["m0", "m1", "m2", "m3"]


def test_url_problems_are_one_line_at_build_start(tmp_path):
    from mixcraft.readers.inputs import path_problems

    problems = dict(path_problems(("memory://nothing/here/*.jsonl", "s3://bucket/x.jsonl", "memory://absent.jsonl"),
                                  (".jsonl",), "text"))
    assert problems["paths[0]"] == "'memory://nothing/here/*.jsonl' matches no file"
    assert problems["paths[1]"].startswith("'s3://bucket/x.jsonl': Install s3fs to access S3 (pip install it")
    assert problems["paths[2]"] == "'memory://absent.jsonl' does not exist"
    assert all("\n" not in p for p in problems.values())


def test_dataset_files_are_resolved_once_and_pinned_for_the_tasks(tmp_path):
    """The prepare pass saves the file list; a file added afterwards is not half-read by some
    tasks: every task reads the saved list until the settings change."""
    from mixcraft.core.ledger import Ledger
    from mixcraft.readers import make_reader

    _hub_repo(tmp_path / "hub", 3, rows_per_file=2)
    cfg = reader_config({"type": "hf", "dataset": str(tmp_path / "hub")})
    work = tmp_path / "work"
    make_reader("s", cfg, Ledger("s"), work_dir=work).prepare(work, 2)
    saved = json.loads((work / "datafiles.json").read_text())
    assert saved["builder"] == "parquet" and len(saved["files"]) == 3
    pq.write_table(pa.table({"id": ["late"], "text": ["added later"]}),
                   tmp_path / "hub" / "data" / "train-00009-of-00010.parquet")
    units = make_reader("s", cfg, Ledger("s"), work_dir=work).units()
    assert [Path(u.path).name for u in units] == [f"train-{i:05d}-of-00003.parquet" for i in range(3)]
    assert all(u.size_bytes > 0 for u in units)


def test_other_formats_stream_per_file_through_their_builder(tmp_path):
    (tmp_path / "csvs").mkdir()
    for k in range(3):
        (tmp_path / "csvs" / f"part{k}.csv").write_text("id,text\n" + "".join(f"c{k}{i},csv row {k} {i}\n"
                                                                             for i in range(4)))
    cfg = {"type": "hf", "dataset": "csv", "data_files": sorted(str(p) for p in (tmp_path / "csvs").glob("*.csv"))}
    docs, ledgers = read_source(cfg, tmp_path, n_tasks=2)
    assert sorted(d.id for d in docs) == sorted(f"c{k}{i}" for k in range(3) for i in range(4))
    assert [led.docs_read for led in ledgers] == [8, 4]  # files 0, 2 and file 1


def test_a_dataset_without_data_files_falls_back_to_streaming_counted(tmp_path, monkeypatch):
    import mixcraft.readers.datafiles as df

    rows = [{"id": f"s{i}", "text": f"streamed {i}"} for i in range(6)]
    (tmp_path / "s.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(df, "resolve", lambda cfg, n_tasks=1: df.DatasetFiles(None, "json", n_tasks))
    cfg = {"type": "hf", "dataset": "json", "data_files": [str(tmp_path / "s.jsonl")]}
    docs, ledgers = read_source(cfg, tmp_path, n_tasks=2)
    assert sorted(d.id for d in docs) == [r["id"] for r in rows]
    assert total(ledgers)["streamed_without_data_files"] == 2  # every task streamed the dataset


def test_a_file_format_without_data_files_is_refused_not_searched_for(tmp_path, monkeypatch):
    """`dataset: parquet` alone would make `datasets` collect Parquet files under the working
    directory (here: the whole checkout and its .venv)."""
    from mixcraft.errors import UserError
    from mixcraft.readers.datafiles import resolve

    monkeypatch.chdir(tmp_path)
    cfg = reader_config({"type": "hf", "dataset": "parquet"}, tmp_path)
    with pytest.raises(UserError, match="'parquet' is a file format, not a dataset: give its `data_files`"):
        resolve(cfg)


def test_missing_split_is_one_clear_line(tmp_path):
    from mixcraft.errors import UserError

    _hub_repo(tmp_path / "hub", 1, rows_per_file=1)
    with pytest.raises(UserError, match=r"no split 'validation' \(it has train\); set `split`"):
        read_source({"type": "hf", "dataset": str(tmp_path / "hub"), "split": "validation"}, tmp_path)


def test_txt_files_are_one_document_each_in_the_text_reader(tmp_path):
    (tmp_path / "pydoc").mkdir()
    for name, body in (("a.txt", "First page.\n"), ("b.txt", "Second page.\n"), ("c.txt", ""),
                       ("d.txt", "\x00\x01binary"), ("e.txt", "x" * 300)):
        (tmp_path / "pydoc" / name).write_text(body)
    docs, (ledger,) = read_source({"type": "text", "paths": [str(tmp_path / "pydoc")], "max_line_bytes": 200},
                                  tmp_path)
    assert [(d.id, d.text) for d in docs] == [("src/a", "First page.\n"), ("src/b", "Second page.\n")]
    assert ledger.docs_dropped == Counter({"empty": 1, "binary": 1, "too_large": 1})
    assert ledger.docs_read == 5


def test_a_list_saved_before_units_had_keys_still_reads():
    from mixcraft.readers.datafiles import DatasetFiles

    old = DatasetFiles.from_json({"identity": {}, "builder": "json", "files": [["/d/a.jsonl", 3]]})
    assert [(u.key, u.path, u.size_bytes, u.row_groups) for u in old.units] == [("/d/a.jsonl", "/d/a.jsonl", 3, None)]
