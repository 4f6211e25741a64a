"""text, books and hf readers: formats, the metadata filter, Gutenberg stripping, bad records."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from helpers import reader_config

RECORDS = [{"id": f"d{i}", "text": f"Document number {i} talks about topic {i}.", "meta": {"set": s}}
           for i, s in enumerate(["web", "book", "web", "book", "web"])]


def _jsonl_bytes(records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def test_jsonl_gz_zst_and_parquet_read_the_same_records(tmp_path, read_source):
    (tmp_path / "a.jsonl").write_bytes(_jsonl_bytes(RECORDS))
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(_jsonl_bytes(RECORDS)))
    (tmp_path / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(_jsonl_bytes(RECORDS)))
    pq.write_table(pa.Table.from_pylist(RECORDS), tmp_path / "d.parquet")
    for name in ("a.jsonl", "b.jsonl.gz", "c.jsonl.zst", "d.parquet"):
        docs, (ledger,) = read_source({"type": "text", "paths": [str(tmp_path / name)]})
        assert [d.text for d in docs] == [r["text"] for r in RECORDS], name
        assert [d.id for d in docs] == [r["id"] for r in RECORDS]
        assert ledger.docs_read == 5


def test_where_filter_and_tasks_cover_every_record_once(tmp_path, read_source):
    for k in range(3):
        (tmp_path / f"p{k}.jsonl").write_bytes(_jsonl_bytes(RECORDS))
    cfg = {"type": "text", "paths": [str(tmp_path)], "where": {"meta.set": "book"}}
    docs, ledgers = read_source(cfg, n_tasks=2)
    assert len(docs) == 6 and all(d.text.endswith(("1.", "3.")) for d in docs)
    assert sum(led.notes["not_selected"] for led in ledgers) == 9


def test_bad_records_are_counted_skips(tmp_path, read_source):
    lines = [json.dumps(RECORDS[0]).encode(), b"{not json", b'{"text": "caf\xe9 latin-1"}', b"[1, 2]",
             b'{"title": "no text"}', b'{"text": "   "}', json.dumps(RECORDS[1]).encode(),
             b'{"text": "' + b"x" * 5000 + b'"}', json.dumps(RECORDS[2]).encode()]
    (tmp_path / "bad.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "notes.csv").write_text("a,b\n")
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "bad.jsonl")
    cfg = {"type": "text", "paths": [str(tmp_path)], "max_line_bytes": 1000}
    docs, (ledger,) = read_source(cfg)
    assert [d.id for d in docs] == ["d0", "d1", "d2"]
    assert dict(ledger.docs_dropped) == {"malformed_json": 1, "invalid_utf8": 1, "not_an_object": 1,
                                         "missing_text_field": 1, "empty": 1, "line_too_long": 1}
    assert ledger.docs_read == 3 + 6
    assert dict(ledger.notes) == {"empty_file": 1, "unsupported_format": 1, "symlink": 1}
    assert ledger.examples["line_too_long"] == [f"{tmp_path / 'bad.jsonl'}:8"]


def test_huge_single_line_is_skipped_in_bounded_memory(tmp_path, read_source):
    import resource

    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as f:
        f.write(json.dumps(RECORDS[0]).encode() + b"\n")
        f.write(b'{"text": "')
        chunk = b"a" * (1 << 20)
        for _ in range(200):  # a 200 MB line
            f.write(chunk)
        f.write(b'"}\n')
        f.write(json.dumps(RECORDS[1]).encode() + b"\n")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    docs, (ledger,) = read_source({"type": "text", "paths": [str(path)], "max_line_bytes": 4 << 20})
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert [d.id for d in docs] == ["d0", "d1"] and ledger.docs_dropped == {"line_too_long": 1}
    assert grown_mib < 64, f"peak RSS grew {grown_mib:.0f} MiB reading past a 200 MB line"


GUTENBERG = """The Project Gutenberg eBook of A Tiny Tale

This eBook is for the use of anyone anywhere in the United States.

*** START OF THE PROJECT GUTENBERG EBOOK A TINY TALE ***

CHAPTER I.

Once upon a time there was a very small book.

*** END OF THE PROJECT GUTENBERG EBOOK A TINY TALE ***

Section 1. General Terms of Use and Redistributing Project Gutenberg electronic works
"""


def test_gutenberg_header_and_footer_are_stripped_and_counted(tmp_path, read_source):
    (tmp_path / "tale.txt").write_text(GUTENBERG)
    (tmp_path / "plain.txt").write_text("A book with no licence text.\n")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    docs, (ledger,) = read_source({"type": "books", "paths": [str(tmp_path)]})
    by_id = {d.id: d.text for d in docs}
    assert by_id["src/tale"] == "CHAPTER I.\n\nOnce upon a time there was a very small book.\n"
    assert by_id["src/plain"] == "A book with no licence text.\n"
    assert ledger.notes == {"gutenberg_header": 1, "gutenberg_footer": 1}
    assert ledger.docs_dropped == {"binary": 1, "invalid_utf8": 1}
    docs, _ = read_source({"type": "books", "paths": [str(tmp_path / "tale.txt")], "strip_gutenberg": False},
                          name="raw")
    assert docs[0].text == GUTENBERG


def test_books_from_hf_dataset_with_slimpajama_filter(tmp_path, read_source):
    rows = [{"text": GUTENBERG, "meta": {"redpajama_set_name": "RedPajamaBook"}},
            {"text": "A web page.", "meta": {"redpajama_set_name": "RedPajamaCommonCrawl"}},
            {"text": "Another book.", "meta": {"redpajama_set_name": "RedPajamaBook"}}]
    (tmp_path / "sp.jsonl").write_bytes(_jsonl_bytes(rows))
    cfg = {"type": "books", "dataset": "json", "data_files": [str(tmp_path / "sp.jsonl")],
           "where": {"meta.redpajama_set_name": "RedPajamaBook"}}
    docs, (ledger,) = read_source(cfg)
    assert [d.text for d in docs] == ["CHAPTER I.\n\nOnce upon a time there was a very small book.\n",
                                      "Another book.\n"]
    assert ledger.notes["not_selected"] == 1 and ledger.notes["gutenberg_header"] == 1


def test_hf_streaming_on_local_parquet_splits_across_tasks(tmp_path, read_source):
    rows = [{"id": f"r{i}", "body": f"row {i} text"} for i in range(10)]
    for k in range(2):
        pq.write_table(pa.Table.from_pylist(rows[k * 5:(k + 1) * 5]), tmp_path / f"s{k}.parquet")
    cfg = {"type": "hf", "dataset": "parquet", "data_files": sorted(str(p) for p in Path(tmp_path).glob("*.parquet")),
           "text_field": "body"}
    docs, ledgers = read_source(cfg, n_tasks=2)
    assert sorted(d.id for d in docs) == sorted(r["id"] for r in rows)  # each record exactly once
    assert all(led.docs_read == 5 for led in ledgers)  # one shard per task
    docs, (ledger,) = read_source({**cfg, "text_field": "missing"}, name="bad")
    assert docs == [] and ledger.docs_dropped == Counter({"missing_text_field": 10})


def test_missing_hf_dataset_is_one_clear_line(tmp_path, read_source):
    import pytest

    from mixcraft.errors import UserError

    with pytest.raises(UserError, match=r"dataset 'json': cannot be loaded .*point `data_files`"):
        read_source({"type": "hf", "dataset": "json", "data_files": [str(tmp_path / "nope.jsonl")]})


def test_limit_reads_exactly_limit_documents(tmp_path):
    """--limit must not pull one document more than it passes on (the ledger would not add up)."""
    from mixcraft.build.progress import TaskProgress
    from mixcraft.build.steps import ReadSource, TaskLedgers
    from mixcraft.core.ledger import Ledger
    from mixcraft.readers import make_reader

    (tmp_path / "a.jsonl").write_bytes(_jsonl_bytes(RECORDS))
    ledgers = TaskLedgers(Ledger("s"))
    cfg = reader_config({"type": "text", "paths": [str(tmp_path)]})
    read = ReadSource(lambda led: make_reader("s", cfg, led), ledgers, task=0, n_tasks=1, passes=1, max_docs=3,
                      progress=TaskProgress(tmp_path / "p.json", "s", 0))
    assert len(list(read())) == 3 and ledgers.main.docs_read == 3
