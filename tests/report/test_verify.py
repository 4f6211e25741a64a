"""`mixcraft verify` exits 1 with a precise message for a flipped byte in a shard, a truncated
shard, a manifest count that does not match the shards, a corrupted decompressed copy, and
a ledger that does not add up; and exits 0 on a sound output."""

import json
import shutil

import pytest

from helpers import rewrite_manifest
from mixcraft.core.manifest import read_manifest
from mixcraft.errors import UserError


@pytest.fixture()
def copy_out(small_build, tmp_path):
    out, _ = small_build
    dst = tmp_path / "out"
    shutil.copytree(out, dst)
    manifest = json.loads((dst / "manifest.json").read_text())  # the test's own copy to spoil
    stream = dict(manifest["streams"][0])
    shard = manifest["shards"][stream["path"]][0]
    return dst, manifest, stream, shard


def _faults(res):
    assert res.returncode == 1, (res.stdout, res.stderr)
    return [line for line in res.stderr.splitlines() if line.startswith("FAULT")]


def test_sound_output_passes(small_build, spawn_cli):
    out, _ = small_build
    res = spawn_cli("verify", out)
    assert res.returncode == 0, res.stderr
    assert "OK" in res.stdout


def test_flipped_byte(copy_out, run_cli):
    out, _, stream, shard = copy_out
    path = out / stream["path"] / shard["basename"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    assert _faults(run_cli("verify", out)) == [
        f"FAULT {stream['path']}/{shard['basename']}: sha1 differs from the hash written at build time (corrupted)"]


def test_truncated_shard(copy_out, run_cli):
    out, _, stream, shard = copy_out
    path = out / stream["path"] / shard["basename"]
    path.write_bytes(path.read_bytes()[:-100])
    assert _faults(run_cli("verify", out)) == [
        f"FAULT {stream['path']}/{shard['basename']}: {shard['bytes'] - 100:,} bytes, the build wrote "
        f"{shard['bytes']:,} (truncated or replaced)"]


def test_manifest_count_mismatch(copy_out, run_cli):
    out, manifest, stream, _ = copy_out
    manifest["streams"][0]["rows"] += 1
    rewrite_manifest(out, manifest)
    assert _faults(run_cli("verify", out)) == [
        f"FAULT {stream['path']}: shards hold {stream['rows']:,} rows / {stream['tokens']:,} tokens, manifest says "
        f"{stream['rows'] + 1:,} / {stream['tokens']:,}"]


def test_corrupted_decompressed_copy(copy_out, run_cli):
    """StreamingDataset reads the decompressed copy it leaves beside a .zstd shard, so verify
    checks that copy too."""
    from streaming import StreamingDataset

    out, _, stream, shard = copy_out
    StreamingDataset(local=str(out / stream["path"]), shuffle=False, batch_size=1)[0]  # makes the copy, as training does
    raw = out / stream["path"] / shard["basename"].removesuffix(".zstd")
    assert raw.is_file()
    data = bytearray(raw.read_bytes())
    data[-10] ^= 0xFF
    raw.write_bytes(bytes(data))
    faults = _faults(run_cli("verify", out))
    assert faults[0] == (f"FAULT {stream['path']}/{shard['basename'].removesuffix('.zstd')}: decompressed copy "
                         "differs from the build's (StreamingDataset reads it instead of the .zstd; delete it and it "
                         "is re-extracted)")


def test_ledger_that_does_not_add_up(copy_out, run_cli):
    out, manifest, stream, _ = copy_out
    led = manifest["ledger"][stream["source"]]["docs"]
    led["read"] += 1
    rewrite_manifest(out, manifest)
    dropped = sum(led["dropped"].values())
    assert _faults(run_cli("verify", out)) == [
        f"FAULT ledger[{stream['source']}]: docs read {led['read']} != kept {led['kept']} + dropped {dropped}"]


def test_an_edited_manifest_is_a_fault_and_the_trainer_refuses_it(copy_out, run_cli):
    """A proportion changed after the build (what a trainer would then use) is caught."""
    out, manifest, _, _ = copy_out
    manifest["streams"][0]["proportion"] = 0.9
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert _faults(run_cli("verify", out)) == [
        f"FAULT {out / 'manifest.json'}: edited after the build (its content digest differs from the one the build "
        "wrote)"]
    with pytest.raises(UserError, match=r"manifest\.json: edited after the build"):
        read_manifest(out)


def test_an_edited_index_is_a_fault(copy_out, run_cli):
    out, _, stream, shard = copy_out
    index = out / stream["path"] / "index.json"
    index.write_text(index.read_text().replace(shard["hash"], "0" * len(shard["hash"])))
    assert _faults(run_cli("verify", out))[0] == (
        f"FAULT {stream['path']}/index.json: sha256 differs from the one recorded at build time (edited or replaced)")


def test_document_ids_are_checked_against_the_spans(small_build):
    """Each span has one id and (offset, document tokens); "" only for the final padding span;
    no piece reaches past its document's end."""
    import numpy as np

    from mixcraft.core.pack import Row
    from mixcraft.mds import read_row, row_of
    from mixcraft.report.verify import doc_id_faults

    out, manifest = small_build
    row = row_of(read_row(out / manifest["streams"][0]["path"], 0))
    assert row.doc_ids and doc_id_faults(row) == [], "a built row is sound"
    ids, spans = np.zeros(10, np.uint32), np.array([[0, 4], [4, 8], [8, 10]], np.uint32)

    def faults(doc_ids, offsets):
        return doc_id_faults(Row(ids, spans, None, doc_ids, 0, offsets))

    assert faults(("a", "b", ""), ((0, 4), (2, 6), (0, 0))) == []
    assert faults(("a", "b"), ((0, 4), (0, 4))) == ["2 document ids and 2 offsets for 3 spans"]
    assert faults(("a", "", "c"), ((0, 4), (0, 0), (0, 2))) == [
        "span 1: an empty document id is for the final padding span only"]
    assert faults(("a", "b", "c"), ((0, 4), (3, 6), (0, 2))) == [
        "span 1: document tokens [3, 7) past its 6 tokens"]
