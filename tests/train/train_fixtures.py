"""Helpers for the trainer tests: small MDS mixtures in the `mixcraft build` output layout.

The documents follow learnable rules (arithmetic progressions with a few strides), so a tiny
model's loss falls within a few dozen steps; lengths vary so rows hold several document pieces
and documents continue across rows, as ProLong's packing does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from mixcraft.core.manifest import Manifest, ShardDigest, Stream, TokenizerInfo, write_manifest

COLUMNS = {"input_ids": "ndarray:uint32", "indices": "ndarray:uint32", "domain": "str", "length": "int"}


def make_docs(rng: np.random.Generator, n_tokens: int, vocab: int, min_len: int, max_len: int) -> list[np.ndarray]:
    docs, total = [], 0
    while total < n_tokens:
        length = int(rng.integers(min_len, max_len + 1))
        start, stride = int(rng.integers(0, vocab)), int(rng.choice([1, 2, 3, 5]))
        docs.append(((start + stride * np.arange(length)) % vocab).astype(np.uint32))
        total += length
    return docs


def pack(docs: list[np.ndarray], seq_len: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Greedy concatenation into exactly seq_len tokens; a document's tail continues in the next row."""
    rows, ids, spans = [], [], []
    for doc in docs:
        while len(doc):
            take = min(len(doc), seq_len - sum(len(x) for x in ids))
            start = sum(len(x) for x in ids)
            ids.append(doc[:take])
            spans.append((start, start + take))
            doc = doc[take:]
            if start + take == seq_len:
                rows.append((np.concatenate(ids), np.array(spans, dtype=np.uint32)))
                ids, spans = [], []
    return rows


def write_mixture(out: Path, *, seq_len: int = 256, rows: int = 24, vocab: int = 512, seed: int = 0,
                  streams: tuple[tuple[str, str, float], ...] = (("books", "256", 0.6), ("code", "256", 0.4)),
                  sft: bool = False, doc_len: tuple[int, int] = (16, 160), tokenizer_file: str | None = None) -> Path:
    """Write OUT/manifest.json and one MDS subset per (source, bucket); returns OUT."""
    from streaming import MDSWriter

    out.mkdir(parents=True, exist_ok=True)
    columns = dict(COLUMNS, **({"mask": "ndarray:uint8"} if sft else {}))
    rng = np.random.default_rng(seed)
    entries, shards = [], {}
    for source, bucket, proportion in streams:
        packed = pack(make_docs(rng, rows * seq_len, vocab, *doc_len), seq_len)[:rows]
        with MDSWriter(out=str(out / source / bucket), columns=columns, compression="zstd", hashes=["sha1"]) as writer:
            for ids, spans in packed:
                sample = {"input_ids": ids, "indices": spans, "domain": source, "length": seq_len}
                if sft:  # loss on the second half of every document piece ("assistant turn")
                    mask = np.zeros(seq_len, np.uint8)
                    for a, b in spans:
                        mask[(a + b) // 2:b] = 1
                    sample["mask"] = mask
                writer.write(sample)
        entries.append(Stream(source=source, bucket=bucket, path=f"{source}/{bucket}", proportion=proportion,
                              target_proportion=proportion, target_tokens=None, domain=source, mask=sft,
                              packing="prolong", rows=len(packed), tokens=len(packed) * seq_len, pieces=0, docs=0,
                              split=0, tail_tokens=0, padding=0))
        shards[f"{source}/{bucket}"] = [ShardDigest(**d) for d in shard_digests(out / source / bucket)]
    tokenizer = TokenizerInfo(name="fixture", file=tokenizer_file, file_sha256="", vocab_size=vocab, backend="hf")
    write_manifest(out, Manifest.of_subsets(name="fixture", seq_len=seq_len, tokenizer=tokenizer, streams=entries,
                                            shards=shards, seed=seed))
    return out


def shard_digests(subset: Path) -> list[dict]:
    """The manifest's `shards` entries for a subset, as `mixcraft build` writes them."""
    index = json.loads((subset / "index.json").read_text())
    out = []
    for shard in index["shards"]:
        stored = shard["zip_data"] or shard["raw_data"]
        out.append({"basename": stored["basename"], "bytes": stored["bytes"], "hash": stored["hashes"]["sha1"],
                    "samples": shard["samples"]})
    return out


def tiny_config(tmp_path: Path, data: Path, name: str = "run", **sections) -> Path:
    """A trainer YAML for a 2-layer dim-64 model; `sections` override keys per section."""
    cfg = {
        "out_dir": str(tmp_path / name), "seed": 0,
        "data": {"path": str(data)},
        "model": {"dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "ffn_dim": 128, "rope_theta": 10000.0},
        "train": {"steps": 6, "tokens_per_step": 512, "lr": 3.0e-3, "warmup_steps": 1, "loss_chunk_tokens": 128},
        "checkpoint": {"every": 0, "final": False, "export_hf": False},
        "log": {"every": 1},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            cfg[section] = {**cfg.get(section, {}), **values}
        else:
            cfg[section] = values
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def read_metrics(run_dir: Path) -> list[dict]:
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def open_loader(out: Path, cache: Path, *, rows: int = 1, proportions=None, crop=None, seed: int = 0,
                vocab: int = 512, workers: int = 0):
    """The trainer's loader over a fixture build, with its working copies under `cache`."""
    from mixcraft.train.data import choose_streams, make_loader, read_manifest

    streams = choose_streams(read_manifest(out, "cfg: data.path"), proportions, "cfg: data.proportions")
    return make_loader(streams, cache=cache, micro_batch_rows=rows, seed=seed, shuffle=True, num_workers=workers,
                       crop_tokens=crop, vocab_size=vocab)


def first_batch(out: Path, cache: Path):
    """The first batch the trainer reads from a fixture build (seed 0, one row)."""
    from mixcraft.train.data import close_loader

    loader = open_loader(out, cache)
    batch = next(iter(loader))
    close_loader(loader)
    return batch


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(config: Path, nproc: int, *extra: str, check: bool = True):
    """`torchrun --nproc_per_node=N -m mixcraft.train CONFIG ...` on CPU (gloo); the finished process."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           f"--master_port={free_port()}", "-m", "mixcraft.train", str(config), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc
