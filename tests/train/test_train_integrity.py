"""The trainer refuses damaged data before step 1, with one line naming the file, and never
writes into the build folder it reads."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from train_fixtures import COLUMNS, tiny_config, write_mixture

from mixcraft.train.__main__ import main
from mixcraft.train.data import read_manifest
from mixcraft.train.integrity import check_streams

SHARD = "books/256/shard.00000.mds.zstd"


@pytest.fixture
def build(tmp_path) -> Path:
    out = write_mixture(tmp_path / "out", rows=8)
    assert (out / SHARD).is_file(), "the fixture should write zstd shards"
    return out


def refused(tmp_path, out: Path, capsys) -> str:
    """Run the trainer's entry point; return its one-line error, checking no step ran."""
    cfg = tiny_config(tmp_path, out, train={"steps": 2})
    assert main([str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert not (tmp_path / "run" / "metrics.jsonl").exists(), "no step may run on damaged data"
    return err


def test_truncated_shard(tmp_path, build, capsys):
    data = (build / SHARD).read_bytes()
    (build / SHARD).write_bytes(data[: len(data) // 2])
    err = refused(tmp_path, build, capsys)
    assert f"{build / SHARD}: {len(data) // 2:,} bytes, the build wrote {len(data):,} (truncated or replaced)" in err


def test_deleted_shard(tmp_path, build, capsys):
    (build / SHARD).unlink()
    err = refused(tmp_path, build, capsys)
    assert f"{build / SHARD}: shard missing (deleted or never copied)" in err


def test_flipped_byte_in_a_zstd_shard(tmp_path, build, capsys):
    data = bytearray((build / SHARD).read_bytes())
    data[len(data) // 2] ^= 0x01
    (build / SHARD).write_bytes(bytes(data))
    err = refused(tmp_path, build, capsys)
    assert f"{build / SHARD}: sha1 differs from the build's (corrupted)" in err


def test_shard_with_fewer_rows_than_the_manifest(tmp_path, build, capsys):
    """The subset rewritten with 5 rows (its own index.json consistent), the manifest saying 8."""
    from streaming import MDSWriter

    subset = build / "books" / "256"
    for f in subset.iterdir():
        f.unlink()
    with MDSWriter(out=str(subset), columns=COLUMNS, compression="zstd", hashes=["sha1"]) as writer:
        for _ in range(5):
            writer.write({"input_ids": np.arange(256, dtype=np.uint32), "length": 256, "domain": "books",
                          "indices": np.array([[0, 256]], dtype=np.uint32)})
    err = refused(tmp_path, build, capsys)
    assert f"{subset / 'index.json'}: lists 5 rows, the manifest says 8" in err


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, hashlib.sha1(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_training_leaves_the_build_folder_unchanged(tmp_path, build):
    from mixcraft.train import run_train

    before = snapshot(build)
    run_train(tiny_config(tmp_path, build, train={"steps": 2}))
    assert snapshot(build) == before
    # StreamingDataset's decompressed copies went to the cache, named by the manifest's digest.
    digest = read_manifest(build, "x").digest[:16]
    copies = sorted(p.name for p in (tmp_path / "run" / "data_cache" / digest).rglob("*.mds"))
    assert copies and all(name.startswith("shard.") for name in copies)


def test_check_reports_what_it_hashed(build):
    manifest = read_manifest(build, "cfg")
    verdict = check_streams(list(manifest.streams), hashes=True, where="cfg")
    sizes = sum(os.path.getsize(build / s.name / d.basename) for s in manifest.streams for d in s.shards)
    assert verdict.fault is None and verdict.n_shards == 2 and verdict.n_bytes == sizes > 0


def test_every_rank_stops_with_the_same_line(tmp_path, build):
    """2 ranks: local rank 0 checks, both get its verdict and exit 2 with the same line."""
    from cp_workers import launch

    data = (build / SHARD).read_bytes()
    (build / SHARD).write_bytes(data[:100])
    results = launch([tiny_config(tmp_path, build, train={"steps": 2})], 2, tmp_path / "ranks")
    want = f"{build / SHARD}: 100 bytes, the build wrote {len(data):,} (truncated or replaced)"
    for rank, (code, _, err) in enumerate(results):
        assert code == 2 and err.count("\n") == 1 and err.startswith(f"[rank {rank}] error: ") and want in err, err
