"""Seeded sampling across read passes (build/steps.py: ReadSource, Sample): downsampling keeps
the asked fraction, upsampling uses each document floor(r) or floor(r) + 1 times (r on average)
in separate passes, long-text knobs act on token length, and the ledger still adds up
(read == kept + dropped)."""

import tempfile
from pathlib import Path

import numpy as np
import pytest
from datatrove.data import Document

from mixcraft.build.progress import TaskProgress
from mixcraft.build.steps import ReadSource, Sample, TaskLedgers
from mixcraft.core.ledger import Ledger, ledger_faults
from mixcraft.core.mixture import max_passes, unit_hash
from mixcraft.core.pack import TokDoc
from mixcraft.core.recipe import LongText, Source
from mixcraft.readers.text import TextConfig

N_DOCS = 2000


def _source(repeat=1.0, long_text=None):
    return Source(name="src", reader=TextConfig(paths=("x",)), repeat=repeat, long_text=long_text, proportion=1.0)


def _docs(n=N_DOCS, long_every=0):
    """Documents of 10 tokens; every `long_every`-th one has 5,000."""
    return [(f"doc-{i}", 5000 if long_every and i % long_every == 0 else 10) for i in range(n)]


class ListReader:
    """A reader over fixed documents, counting each read as a real reader does."""

    def __init__(self, docs, ledger):
        self.docs, self.ledger = docs, ledger

    def read(self, task, n_tasks):
        for doc_id, n in self.docs:
            self.ledger.read()
            yield Document(text="x", id=doc_id, metadata={"n": n})


def _tokenized(docs):
    for d in docs:
        yield TokDoc(d.id, np.zeros(d.metadata["n"], dtype=np.uint32), pass_no=d.metadata["pass"])


def _run(source, docs, seed=7):
    """ReadSource -> (tokenize) -> Sample, as a build task chains them; count uses per document."""
    ledgers = TaskLedgers(Ledger("src"))
    progress = TaskProgress(Path(tempfile.mkdtemp()) / "progress.json", "src", 0)
    read = ReadSource(lambda led: ListReader(docs, led), ledgers, task=0, n_tasks=1, passes=max_passes(source),
                      max_docs=None, progress=progress)
    sample = Sample(source, seed, ledgers, progress)
    uses, passes_of = {}, {}
    for d in sample(_tokenized(read()), 0, 1):
        uses[d.doc_id] = uses.get(d.doc_id, 0) + 1
        passes_of.setdefault(d.doc_id, []).append(d.pass_no + 1)
        ledgers.main.docs_kept += 1  # the packer keeps it
    return ledgers.main, (read, sample), uses, passes_of


def test_unit_hash_is_stable_and_uniform():
    assert unit_hash(1, "a", "b") == unit_hash(1, "a", "b") != unit_hash(2, "a", "b")
    values = [unit_hash(0, "s", str(i)) for i in range(N_DOCS)]
    assert 0 <= min(values) and max(values) < 1
    assert abs(np.mean(values) - 0.5) < 0.03


def test_downsampling_keeps_the_fraction_and_counts_the_rest():
    ledger, _, uses, _ = _run(_source(repeat=0.3), _docs())
    kept = len(uses)
    assert abs(kept / N_DOCS - 0.3) < 0.04, kept
    assert ledger.docs_dropped["sampled_out"] == N_DOCS - kept
    assert not ledger_faults("src", ledger.to_dict())


@pytest.mark.parametrize("repeat", [2.0, 2.5])
def test_upsampling_uses_each_doc_r_times_on_average_in_separate_passes(repeat):
    ledger, (read, sample), uses, passes_of = _run(_source(repeat=repeat), _docs())
    counts = np.array(list(uses.values()))
    assert len(uses) == N_DOCS, "every document is used in the first pass"
    assert set(counts) <= {int(repeat), int(repeat) + 1}
    assert abs(counts.mean() - repeat) < 0.04
    assert all(p == list(range(1, len(p) + 1)) for p in passes_of.values()), "copies come in later passes"
    expected_passes = 3 if repeat == 2.5 else 2
    assert read.passes_started == max_passes(_source(repeat=repeat)) == expected_passes
    assert ledger.docs_read == counts.sum() == ledger.docs_kept
    assert sample.docs_repeated == counts.sum() - N_DOCS
    assert not ledger_faults("src", ledger.to_dict())


def test_same_seed_same_choice_other_seed_other_choice():
    a = _run(_source(repeat=0.5), _docs(), seed=1)[2]
    assert a == _run(_source(repeat=0.5), _docs(), seed=1)[2]
    assert a != _run(_source(repeat=0.5), _docs(), seed=2)[2]


def test_long_text_upsampling_and_removal():
    lt = LongText(min_tokens=4096, upsample=3.0)
    _, _, uses, _ = _run(_source(long_text=lt), _docs(200, long_every=10))
    long_ids = {f"doc-{i}" for i in range(0, 200, 10)}
    assert all(uses[d] == 3 for d in long_ids)
    assert all(uses[d] == 1 for d in uses if d not in long_ids)

    removed = LongText(min_tokens=4096, remove=True)
    ledger, _, uses, _ = _run(_source(long_text=removed), _docs(200, long_every=10))
    assert not set(uses) & long_ids and len(uses) == 180
    assert ledger.docs_dropped["long_removed"] == 20
    assert ledger.tokens_dropped["long_removed"] == 20 * 5000
    assert not ledger_faults("src", ledger.to_dict())
