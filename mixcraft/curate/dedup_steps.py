"""The dedup stages as datatrove steps; an executor runs each over its tasks (curate/dedup.py
has the plan and the semantics, curate/dedup_files.py the files between them).

    dedup_signatures   rank r reads its (source, task) once: document keys, xxhash64 of the
                       text into exact partition hash % P, the MinHash signature in full and
                       as num_buckets LSH bands (sorted runs, datatrove's format)
    exact_partitions   task p merges partition p: each later copy of a hash -> its first copy
    minhash_buckets    task (b, w) merges band b, hash range w: within each group of equal
                       bands, each document -> the earliest earlier member whose whole
                       signature agrees on >= threshold of its values
    dedup_verdicts     rank r gathers its copies: the exact original if any, else the earliest
                       near one; writes the verdicts file its build task reads
"""

from __future__ import annotations

import heapq
import json
import time
from abc import abstractmethod
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.hashing import create_hash_func

from mixcraft.core.outdir import write_atomic
from mixcraft.curate.dedup_files import (
    EXACT,
    CopyWriter,
    KeyWriter,
    RowReader,
    RowWriter,
    SortedRuns,
    band_dtype,
    count_keys,
    merge_runs,
    read_copies,
    read_key,
    write_stats,
)
from mixcraft.curate.minhash import MinHasher

SIG_DTYPE = np.dtype("<u8")  # datatrove's default 64-bit MinHash values


class DedupStep(PipelineStep):
    """One dedup stage; `job` (curate/dedup.py `DedupJob`) names its inputs and folders."""

    type = "mixcraft"
    stage = ""

    def __init__(self, job):
        super().__init__()
        self.job = job

    def run(self, data=None, rank: int = 0, world_size: int = 1) -> Iterator:
        started = time.perf_counter()
        with self.track_time():
            counts = self.run_task(rank)
        write_stats(self.job.stats / self.stage / f"{rank:05d}.json", started, **counts)
        yield from ()

    @abstractmethod
    def run_task(self, rank: int) -> dict:
        """This stage's work for one rank; the counts for its stats file."""


class DedupSignatures(DedupStep):
    """Read one (source, task) and write what the later stages compare (see the module doc)."""

    name = stage = "dedup_signatures"

    def run_task(self, rank: int) -> dict:
        job, work = self.job, self.job.work
        _clear_rank(work, rank)
        keys = KeyWriter(*job.key_files(rank))
        exact = SortedRuns(EXACT, lambda p, run: work / "exact" / f"{p:05d}" / f"{rank:05d}_{run:05d}.bin",
                           job.budget_bytes)
        mh = job.cfg.minhash
        if mh:
            hasher = MinHasher(job.minhash, work / "datatrove")
            full = RowWriter(job.full_file(rank))
            empty = np.zeros(mh.num_buckets * mh.hashes_per_bucket, dtype=SIG_DTYPE)
            bands = SortedRuns(band_dtype(mh.hashes_per_bucket), lambda b, run: job.band_file(b, rank, run),
                               job.budget_bytes)
        hash_text = create_hash_func(job.hashes, str)  # xxhash64, as datatrove's exact dedup
        stream, docs, chars, signed = job.streams[rank], 0, 0, 0
        for pos, doc in enumerate(stream()):
            keys.add(f"{stream.source}:{doc.id}")
            docs, chars = docs + 1, chars + len(doc.text)
            if job.cfg.exact:
                h = hash_text(doc.text)
                exact.add(h % job.partitions, h, rank, pos)
            if mh:
                sig = hasher.signature(doc.text)
                full.add(empty if sig is None else sig)
                if sig is not None:
                    signed += 1
                    for b, band in enumerate(sig.tolist()):
                        bands.add(b, *band, pos)
        keys.close()
        exact.flush()
        runs = exact.files
        if mh:
            full.close()
            bands.flush()
            runs += bands.files
        return {"docs": docs, "chars": chars, "signed": signed, "run_files": runs}


def _clear_rank(work: Path, rank: int) -> None:
    """What a killed earlier try of this rank left: its runs (other ranks' stay)."""
    for pattern in (f"exact/*/{rank:05d}_*.bin", f"bands/*/{rank:05d}_*.minhash.sig"):
        for path in work.glob(pattern):
            path.unlink()


class ExactPartitions(DedupStep):
    """Partition p: every later copy of a text hash points at the hash's first document."""

    name = stage = "exact_partitions"

    def run_task(self, rank: int) -> dict:
        job = self.job
        files = sorted((job.work / "exact" / f"{rank:05d}").glob("*.bin"))
        out = CopyWriter(job.copies_dir(self.stage, rank), job.budget_bytes).start()
        last, first, records = None, (0, 0), 0
        for h, r, pos in merge_runs(files, EXACT):
            records += 1
            if h == last:
                out.add(r, pos, *first)
            else:
                last, first = h, (r, pos)
        out.flush()
        return {"records": records, "copies": out.count, "files": len(files)}


class MinhashBuckets(DedupStep):
    """Band b, hash range w (task b * W + w): groups of documents with equal bands, merged from
    every rank's sorted runs with datatrove's `read_sigs`; see `earliest_originals`."""

    name = stage = "minhash_buckets"

    def run_task(self, rank: int) -> dict:
        from datatrove.io import get_datafolder
        from datatrove.pipeline.dedup.minhash import _mersenne_prime, read_sigs

        job, mh = self.job, self.job.cfg.minhash
        bucket, worker = divmod(rank, job.bucket_workers)
        # MinHash values are uniform on [0, 2^61 - 1): equal slices balance the workers.
        lo, hi = (int(_mersenne_prime) * w // job.bucket_workers for w in (worker, worker + 1))
        folder = get_datafolder(str(job.work / "bands"))
        names = sorted(folder.list_files(subdirectory=f"bucket_{bucket:03d}"), key=_rank_run)
        ranks = [_rank_run(n)[0] for n in names]
        config = job.minhash
        readers = [read_sigs(f, i, config, min_hash=lo, max_hash=hi, lines_to_buffer=1024)
                   for i, f in enumerate(folder.open_files(names, mode="rb"))]
        out = CopyWriter(job.copies_dir(self.stage, rank), job.budget_bytes).start()
        sigs = RowReader(job.full_file, SIG_DTYPE, mh.num_buckets * mh.hashes_per_bucket)
        group, last, largest = [], None, 0
        # HashSig orders by (band, file index, ..., position): a group comes out in recipe order.
        for hs in heapq.merge(*readers):
            if hs.sig != last:
                largest = max(largest, _emit(group, sigs, mh.threshold, out))
                group, last = [], hs.sig
            group.append((ranks[hs.reader_id], hs.doc_id))
        largest = max(largest, _emit(group, sigs, mh.threshold, out))
        out.flush()
        sigs.close()
        return {"files": len(names), "copies": out.count, "largest_group": largest}


def _rank_run(name: str) -> tuple[int, int]:
    """(rank, run) of a band file `<rank>_<run>.minhash.sig`: the order documents come in."""
    rank, run = Path(name).name.removesuffix(".minhash.sig").split("_")
    return int(rank), int(run)


def _emit(group: list[tuple[int, int]], sigs: RowReader, threshold: float, out: CopyWriter) -> int:
    if len(group) > 1:
        for copy, original in earliest_originals(group, sigs.row, threshold):
            out.add(*copy, *original)
    return len(group)


def earliest_originals(group, signature, threshold: float) -> Iterator[tuple[tuple, tuple]]:
    """For each member of a group (in recipe order) with an earlier member whose signature
    agrees on >= threshold of its values: (member, the earliest such). Members with the same
    whole signature as an earlier one (exact copies) share its answer, so memory and work grow
    with the group's distinct signatures, not its size."""
    distinct: list[tuple[tuple, np.ndarray]] = []
    answer: dict[bytes, tuple] = {}
    for member in group:
        sig = signature(*member)
        seen = answer.get(sig.tobytes())
        if seen is not None:
            yield member, seen
            continue
        original = next((m for m, s in distinct if float(np.mean(s == sig)) >= threshold), None)
        # A later member with this signature copies `original`, or else this member itself.
        answer[sig.tobytes()] = member if original is None else original
        distinct.append((member, sig))
        if original is not None:
            yield member, original


class DedupVerdicts(DedupStep):
    """Rank r's verdicts: position -> (exact_duplicate | near_duplicate, key of the original),
    written where its build task reads them (`curate.dedup.load_verdicts`)."""

    name = stage = "dedup_verdicts"

    def run_task(self, rank: int) -> dict:
        job = self.job
        exact = {pos: (r, p) for pos, r, p in read_copies(job.copies_dirs("exact_partitions"), rank)}
        near: dict[int, tuple[int, int]] = {}
        for pos, r, p in read_copies(job.copies_dirs("minhash_buckets"), rank):
            near[pos] = min(near.get(pos, (r, p)), (r, p))

        @lru_cache(maxsize=4096)
        def key(r: int, p: int) -> str:
            return read_key(*job.key_files(r), p)

        verdicts = {}
        for pos in sorted(exact.keys() | near.keys()):
            reason, original = ("exact_duplicate", exact[pos]) if pos in exact else ("near_duplicate", near[pos])
            verdicts[str(pos)] = [reason, key(*original)]
        write_atomic(job.verdicts[rank], json.dumps(verdicts))
        return {"docs": count_keys(job.key_files(rank)[1]), "exact": len(exact),
                "near": len(near.keys() - exact.keys())}

