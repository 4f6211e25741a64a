"""core/mdsfile.py writes what mosaicml-streaming's MDSWriter writes, byte for byte, and reads
it back; StreamingDataset reads what it writes."""

from __future__ import annotations

import numpy as np
import pytest

from mixcraft.core.mdsfile import ShardReader, ShardWriter
from mixcraft.mds import columns_for


def _rows(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        length = int(rng.integers(20, 3000))
        cuts = np.sort(rng.choice(np.arange(1, length), size=min(4, length - 1), replace=False))
        ends = np.append(cuts, length)
        spans = np.stack([np.concatenate([[0], ends[:-1]]), ends], axis=1).astype(np.uint32)
        yield {"input_ids": rng.integers(0, 128_256, length, dtype=np.uint32), "indices": spans,
               "domain": f"src{i % 3}", "length": length, "mask": rng.integers(0, 2, length, dtype=np.uint8)}


@pytest.mark.parametrize("compressed", [True, False])
@pytest.mark.parametrize("size_limit", [1 << 26, 40_000, 100])  # one shard; several; a sample over the limit
def test_bytes_equal_streamings_mdswriter(tmp_path, compressed, size_limit):
    from streaming import MDSWriter

    columns = columns_for(with_mask=True)
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    writer = ShardWriter(ours, columns=columns, compressed=compressed, size_limit=size_limit)
    with MDSWriter(out=str(theirs), columns=columns, compression="zstd:3" if compressed else None,
                   hashes=["sha1"], size_limit=size_limit) as reference:
        for row in _rows(40):
            writer.write(row)
            reference.write(row)
    writer.finish()
    files = sorted(p.name for p in theirs.iterdir())
    assert len(files) >= (2 if size_limit < 1 << 26 else 2), files
    assert files == sorted(p.name for p in ours.iterdir())
    for name in files:
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name


def test_read_back_and_through_streaming(tmp_path):
    import json

    from streaming import StreamingDataset

    rows = list(_rows(25, seed=3))
    writer = ShardWriter(tmp_path, columns=columns_for(with_mask=True), compressed=True, size_limit=20_000)
    for row in rows:
        writer.write(row)
    writer.finish()
    infos = json.loads((tmp_path / "index.json").read_text())["shards"]
    ours = [ShardReader(tmp_path, info).sample(i) for info in infos for i in range(info["samples"])]
    ds = StreamingDataset(local=str(tmp_path / "cache"), remote=str(tmp_path), shuffle=False, batch_size=1)
    assert ds.num_samples == len(rows) == len(ours)
    for i, row in enumerate(rows):
        for got in (ours[i], ds[i]):
            assert np.array_equal(got["input_ids"], row["input_ids"])
            assert np.array_equal(np.asarray(got["indices"]).reshape(-1, 2), row["indices"])
            assert np.array_equal(got["mask"], row["mask"]) and got["domain"] == row["domain"]
            assert got["length"] == row["length"]
