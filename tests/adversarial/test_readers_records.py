"""Hostile record files (JSONL, Parquet, .txt) and input paths: bombs, truncations, bad
encodings, odd files, symlink tricks. Each case asserts the exact ledger outcome and that
nothing outside the roots is opened."""

from __future__ import annotations

import gzip
import json
import os
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from readerhelp import OpenSpy, peak_rss_mib, read_source

GOOD = [json.dumps({"id": f"g{i}", "text": f"good record {i}"}) for i in range(3)]


def _read(tmp_path: Path, paths: list, **cfg):
    docs, (ledger,) = read_source({"type": cfg.pop("type", "text"), "paths": [str(p) for p in paths], **cfg},
                                  tmp_path)
    return docs, ledger


def _gzip_bomb(path: Path, inflated: int) -> None:
    """One JSON line of `inflated` zero characters, gzip'd at about 1000x."""
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(b'{"id": "bomb", "text": "')
        chunk = b"0" * (1 << 20)
        for _ in range(inflated >> 20):
            f.write(chunk)
        f.write(b'"}\n' + "\n".join(GOOD).encode() + b"\n")


def test_gzip_bomb_is_one_counted_line_in_bounded_memory(tmp_path):
    path = tmp_path / "bomb.jsonl.gz"
    _gzip_bomb(path, 256 << 20)
    assert (256 << 20) / path.stat().st_size > 900
    code = f"""
from readerhelp import read_source
from pathlib import Path
docs, (ledger,) = read_source({{"type": "text", "paths": [{str(path)!r}], "max_line_bytes": 8 << 20}},
                              Path({str(tmp_path)!r}))
assert [d.id for d in docs] == ["g0", "g1", "g2"], [d.id for d in docs]
assert dict(ledger.docs_dropped) == {{"line_too_long": 1}}, ledger.docs_dropped
"""
    assert peak_rss_mib(code, timeout=300) < 200  # 256 MB inflated; 8 MiB lines at most


def test_zstd_bomb_is_one_counted_line_in_bounded_memory(tmp_path):
    path = tmp_path / "bomb.jsonl.zst"
    cctx = zstandard.ZstdCompressor(level=19)
    with open(path, "wb") as raw, cctx.stream_writer(raw) as f:
        f.write(b'{"text": "')
        for _ in range(256):
            f.write(b"1" * (1 << 20))
        f.write(b'"}\n' + GOOD[0].encode() + b"\n")
    assert (256 << 20) / path.stat().st_size > 1000
    code = f"""
from readerhelp import read_source
from pathlib import Path
docs, (ledger,) = read_source({{"type": "text", "paths": [{str(path)!r}], "max_line_bytes": 8 << 20}},
                              Path({str(tmp_path)!r}))
assert [d.id for d in docs] == ["g0"] and dict(ledger.docs_dropped) == {{"line_too_long": 1}}
"""
    assert peak_rss_mib(code, timeout=300) < 200


@pytest.mark.parametrize("name,make", [
    ("cut.jsonl.gz", lambda b: gzip.compress(b)[:-30]),
    ("cut.jsonl.zst", lambda b: zstandard.ZstdCompressor().compress(b)[:-10]),
    ("fake.jsonl.gz", lambda b: b"this is not gzip at all\n" * 10),
    ("fake.jsonl.zst", lambda b: b"\x28\xb5\x2f\xfd" + os.urandom(200)),
])
def test_truncated_or_fake_compressed_files_are_one_counted_skip(tmp_path, name, make):
    body = ("\n".join(GOOD * 300) + "\n").encode()
    (tmp_path / name).write_bytes(make(body))
    docs, ledger = _read(tmp_path, [tmp_path / name])
    assert ledger.docs_dropped == {"corrupt_file": 1}
    assert ledger.docs_read == len(docs) + 1 and len(docs) < 900
    assert "\n" not in ledger.examples["corrupt_file"][0]


@pytest.mark.parametrize("damage", ["random", "truncated", "no_footer_magic"])
def test_damaged_parquet_is_one_counted_skip(tmp_path, damage):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": [f"row {i}" for i in range(1000)]}), path, row_group_size=100)
    data = path.read_bytes()
    path.write_bytes({"random": os.urandom(len(data)), "truncated": data[:len(data) // 2],
                      "no_footer_magic": data[:-4] + b"XXXX"}[damage])
    docs, ledger = _read(tmp_path, [path])
    assert docs == [] and ledger.docs_dropped == {"corrupt_parquet": 1}


def test_parquet_with_a_non_string_text_column(tmp_path):
    pq.write_table(pa.table({"text": [1, 2, 3], "id": ["a", "b", "c"]}), tmp_path / "ints.parquet")
    docs, ledger = _read(tmp_path, [tmp_path / "ints.parquet"])
    assert docs == [] and ledger.docs_dropped == {"missing_text_field": 3}


@pytest.mark.parametrize("line,reason", [
    (b"[" * 100_000 + b"]" * 100_000, "malformed_json"),  # RecursionError inside json
    (b'{"text": ' + b"9" * 5000 + b"}", "malformed_json"),  # an int past Python's 4,300 digits
    (b'{"text": "lone \\ud800 surrogate"}', "invalid_utf8"),
    (b'{"text": "caf\xe9"}', "invalid_utf8"),
    (b"NaN", "not_an_object"),
    (b'"just a string"', "not_an_object"),
    (b'{"text": {"nested": "dict"}}', "missing_text_field"),
    (b'{"text": "\\u0000\\u0000"}', None),  # NUL characters are text; kept
    (b'{"text": "   \\n\\t  "}', "empty"),
    (b'{"text": "x", "text": "duplicate keys: the last wins"}', None),
])
def test_hostile_json_lines(tmp_path, line, reason):
    (tmp_path / "h.jsonl").write_bytes(b"\n".join([GOOD[0].encode(), line, GOOD[1].encode()]) + b"\n")
    docs, ledger = _read(tmp_path, [tmp_path / "h.jsonl"])
    if reason is None:
        assert len(docs) == 3 and ledger.docs_dropped == {}
    else:
        assert [d.id for d in docs] == ["g0", "g1"] and ledger.docs_dropped == {reason: 1}
    for d in docs:
        d.text.encode("utf-8")


def test_utf16_file_is_counted_not_decoded_as_garbage(tmp_path):
    (tmp_path / "u16.jsonl").write_bytes(("\n".join(GOOD) + "\n").encode("utf-16"))
    docs, ledger = _read(tmp_path, [tmp_path / "u16.jsonl"])
    # The BOM's 0xFF is not UTF-8; the other lines start with the NUL half of UTF-16's "\n".
    assert docs == [] and ledger.docs_dropped == {"invalid_utf8": 1, "malformed_json": 3}


@pytest.mark.timeout(20)
def test_fifo_named_like_an_input_is_never_opened(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text(GOOD[0] + "\n")
    os.mkfifo(tmp_path / "in" / "pipe.jsonl")
    docs, ledger = _read(tmp_path, [tmp_path / "in"])
    assert [d.id for d in docs] == ["g0"] and ledger.notes == {"not_a_file": 1}


def test_glob_and_symlink_to_passwd_is_counted_and_never_opened(tmp_path, monkeypatch):
    books = tmp_path / "books"
    (books / "shelf").mkdir(parents=True)
    (books / "a.txt").write_text("A real book.\n")
    (books / "passwd.txt").symlink_to("/etc/passwd")
    (books / "etc").symlink_to("/etc")  # a linked folder a glob would walk through
    (books / "shelf" / "b.txt").write_text("Another book.\n")
    spy = OpenSpy()
    with spy.installed(monkeypatch):
        docs, (ledger,) = read_source({"type": "books", "paths": [f"{books}/*.txt", f"{books}/*/passwd"]},
                                      tmp_path, spy=spy)
    assert [d.text for d in docs] == ["A real book.\n"]
    assert ledger.notes == {"symlink": 2}
    assert not any("passwd" in p or "/etc" in p for ps in spy.opened.values() for p in ps)


def test_glob_through_a_linked_folder_is_counted(tmp_path):
    (tmp_path / "data" / "real").mkdir(parents=True)
    (tmp_path / "data" / "real" / "x.jsonl").write_text(GOOD[0] + "\n")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.jsonl").write_text(GOOD[1] + "\n")
    (tmp_path / "data" / "link").symlink_to(tmp_path / "elsewhere")
    docs, ledger = _read(tmp_path, [f"{tmp_path}/data/*/x.jsonl"])
    assert [d.id for d in docs] == ["g0"] and ledger.notes == {"symlink": 1}


def test_folder_named_like_a_file_and_dotfiles(tmp_path):
    (tmp_path / "in" / "folder.jsonl").mkdir(parents=True)
    (tmp_path / "in" / "folder.jsonl" / "inner.jsonl").write_text(GOOD[0] + "\n")
    (tmp_path / "in" / ".hidden.jsonl").write_text(GOOD[1] + "\n")
    docs, ledger = _read(tmp_path, [tmp_path / "in"])
    assert sorted(d.id for d in docs) == ["g0", "g1"] and ledger.notes == {}


@pytest.mark.parametrize("data,reason", [
    (b"\xef\xbb\xbfA BOM is not part of the text.\n", None),
    ("caf\xe9\n".encode("latin-1"), "invalid_utf8"),
    (b"\x7fELF\x02\x01\x01\x00" + bytes(64), "binary"),
    (b"", "empty"),
    (b"x" * 5000, "too_large"),
])
def test_hostile_txt_files(tmp_path, data, reason):
    (tmp_path / "f.txt").write_bytes(data)
    docs, ledger = _read(tmp_path, [tmp_path / "f.txt"], max_line_bytes=4096)
    if reason is None:
        assert [d.text for d in docs] == ["A BOM is not part of the text.\n"]
    else:
        assert docs == [] and ledger.docs_dropped == {reason: 1}


def test_invalid_utf8_file_names_are_counted(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "ok.jsonl").write_text(GOOD[0] + "\n")
    with open(os.path.join(os.fsencode(tmp_path / "in"), b"bad\xff.jsonl"), "w") as f:
        f.write(GOOD[1] + "\n")
    docs, ledger = _read(tmp_path, [tmp_path / "in"])
    assert [d.id for d in docs] == ["g0"] and ledger.notes == {"invalid_utf8_name": 1}


def test_a_file_removed_after_listing_is_counted(tmp_path):
    from helpers import reader_config
    from mixcraft.core.ledger import Ledger
    from mixcraft.readers import make_reader

    for name in ("a", "b"):
        (tmp_path / f"{name}.jsonl").write_text(GOOD[0] + "\n")
    ledger = Ledger("s")
    reader = make_reader("s", reader_config({"type": "text", "paths": [str(tmp_path)]}), ledger)
    units = reader.task_units(0, 1)
    (tmp_path / "b.jsonl").unlink()
    docs = [d for u in units for d in reader.read_unit(u)]
    assert len(docs) == 1 and ledger.docs_dropped == {"missing_file": 1}


@pytest.mark.parametrize("record,reason", [
    ({"messages": "not a list"}, "missing_messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "malformed_message"),
    ({"messages": [{"role": "user", "content": 42}]}, "malformed_message"),
    ({"messages": [{"role": "user", "content": "only a question"}]}, "no_assistant_turn"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad \ud800"}]},
     "invalid_utf8"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}, None),
])
def test_hostile_chat_records(tmp_path, record, reason):
    (tmp_path / "c.jsonl").write_text(json.dumps(record) + "\n")
    docs, ledger = _read(tmp_path, [tmp_path / "c.jsonl"], type="chat")
    assert (docs == [] and ledger.docs_dropped == {reason: 1}) if reason else len(docs) == 1


def test_where_with_a_value_of_another_type_selects_nothing(tmp_path):
    (tmp_path / "w.jsonl").write_text("\n".join(json.dumps({"text": f"t{i}", "n": i}) for i in range(4)) + "\n")
    pq.write_table(pa.table({"text": ["a", "b"], "n": [1, 2]}), tmp_path / "w.parquet")
    docs, ledger = _read(tmp_path, [tmp_path / "w.jsonl", tmp_path / "w.parquet"], where={"n": "1"})
    assert docs == [] and ledger.notes == {"not_selected": 6}


def test_unreadable_file_is_counted(tmp_path, monkeypatch):
    import mixcraft.core.records as records

    (tmp_path / "locked.jsonl").write_text(GOOD[0] + "\n")
    (tmp_path / "ok.jsonl").write_text(GOOD[1] + "\n")
    real = records.open_raw

    def refuse(path):  # root reads a chmod-000 file anyway, so simulate the kernel's refusal
        if str(path).endswith("locked.jsonl"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(records, "open_raw", refuse)
    docs, ledger = _read(tmp_path, [tmp_path])
    assert [d.id for d in docs] == ["g1"] and ledger.docs_dropped == {"unreadable": 1}


def test_deflate_stream_inside_a_zst_name_is_corrupt_not_a_crash(tmp_path):
    (tmp_path / "odd.jsonl.zst").write_bytes(zlib.compress(GOOD[0].encode()))
    docs, ledger = _read(tmp_path, [tmp_path / "odd.jsonl.zst"])
    assert docs == [] and ledger.docs_dropped == {"corrupt_file": 1}
