"""The steps of one build task, as datatrove `PipelineStep`s chained in `build/task.py`:

    ReadSource -> DropDuplicates -> KeepStage -> FilterText -> Tokenize -> FilterTokens
        -> Sample -> PackRows -> WriteRows

Each is a generator over the previous step's output with a one-line contract, and does its
own accounting in the task's ledger. Up to `Tokenize` items are datatrove `Document`s; after it
they are `TokDoc`s (ids and loss mask, without the text, so packers buffering millions of tokens
hold no text); `PackRows` yields `BucketRow`s. A source with `repeat > 1` is read in several
passes (`ReadSource`); each item carries its pass number, and what the steps count for passes
after the first goes to a scratch ledger, since those documents were counted in pass 1
(`TaskLedgers`); `Sample` counts each copy it keeps as one more document read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep

from mixcraft.build.progress import TaskProgress
from mixcraft.build.sinks import BucketRow, BucketSink
from mixcraft.core.chat import ChatSkip, render_chat
from mixcraft.core.ledger import Ledger
from mixcraft.core.lengths import LengthHistogram
from mixcraft.core.mixture import doc_repeat, in_stage, unit_hash
from mixcraft.core.pack import TokDoc
from mixcraft.core.recipe import Source, StageInfo, Validation
from mixcraft.core.tokenize import Tok
from mixcraft.curate.filters import Filter
from mixcraft.mds import SubsetWriter
from mixcraft.readers.base import Reader


@dataclass
class TaskLedgers:
    """The task's ledger for pass 1, and a scratch one for later passes (already counted)."""

    main: Ledger
    scratch: Ledger = field(init=False)

    def __post_init__(self) -> None:
        self.scratch = Ledger(self.main.source)

    def of(self, pass_no: int) -> Ledger:
        return self.main if pass_no == 0 else self.scratch


class Step(PipelineStep):
    type = "mixcraft"


class ReadSource(Step):
    """Documents of this task's input units, at most `max_docs` per pass, in `passes` passes;
    each tagged with its pass and its position in that pass."""

    name = "read"

    def __init__(self, make_reader: Callable[[Ledger], Reader], ledgers: TaskLedgers, *, task: int, n_tasks: int,
                 passes: int, max_docs: int | None, progress: TaskProgress):
        super().__init__()
        self.make_reader, self.ledgers, self.task, self.n_tasks = make_reader, ledgers, task, n_tasks
        self.passes, self.max_docs, self.progress = passes, max_docs, progress
        self.passes_started = 0

    def run(self, data=None, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        for p in range(self.passes):
            self.passes_started = p + 1
            if self.max_docs is not None and self.max_docs <= 0:
                continue
            reader = self.make_reader(self.ledgers.of(p))
            for ordinal, doc in enumerate(reader.read(self.task, self.n_tasks)):
                doc.metadata["pass"], doc.metadata["ordinal"] = p, ordinal
                self.progress.chars += len(doc.text)
                yield doc
                # Stop without pulling document max_docs + 1: a reader counts a document as read
                # when it yields it, so pulling one more would break read = kept + dropped.
                if self.max_docs is not None and ordinal + 1 >= self.max_docs:
                    break


class DropDuplicates(Step):
    """Drop the documents the dedup pass found to be later copies, by their position in pass 1's
    read stream (every pass reads the same stream)."""

    name = "drop duplicates"

    def __init__(self, verdicts: dict[int, tuple[str, str]], ledgers: TaskLedgers):
        super().__init__()
        self.verdicts, self.ledgers = verdicts, ledgers

    def run(self, data, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        for doc in data:
            verdict = self.verdicts.get(doc.metadata["ordinal"])
            if verdict is None:
                yield doc
                continue
            reason, kept = verdict
            self.ledgers.of(doc.metadata["pass"]).drop(reason, where=f"{doc.id} (copy of {kept})", text=doc.text)


class KeepStage(Step):
    """In a curriculum stage, keep the documents hashed into this stage's share; the others
    belong to another stage (`other_stage`), so no document is trained on in two stages."""

    name = "curriculum stage"

    def __init__(self, stage: StageInfo | None, seed: int, source: str, ledgers: TaskLedgers):
        super().__init__()
        self.stage, self.seed, self.source, self.ledgers = stage, seed, source, ledgers

    def run(self, data, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        for doc in data:
            if self.stage is None or in_stage(self.stage, self.seed, self.source, str(doc.id)):
                yield doc
            else:
                self.ledgers.of(doc.metadata["pass"]).drop("other_stage", where=str(doc.id))


class FilterText(Step):
    """Run the text filters in recipe order; the first that objects names the drop reason."""

    name = "filter text"

    def __init__(self, filters: list[Filter], ledgers: TaskLedgers):
        super().__init__()
        self.filters, self.ledgers = [f for f in filters if not f.on_tokens], ledgers

    def run(self, data, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        for doc in data:
            reason = next((r for f in self.filters for keep, r in [f.check(doc)] if not keep), None)
            if reason is None:
                yield doc
            else:
                self.ledgers.of(doc.metadata["pass"]).drop(reason, where=str(doc.id), text=doc.text)


class Tokenize(Step):
    """Text -> uint32 ids (a chat -> ids and loss mask); BOS/EOS only if the recipe asks
    (ProLong's data has neither); an empty result is dropped as `no_tokens`."""

    name = "tokenize"

    def __init__(self, tok: Tok, ledgers: TaskLedgers, *, add_bos: bool, add_eos: bool):
        super().__init__()
        self.tok, self.ledgers = tok, ledgers
        self.bos = [tok.bos_id] if add_bos and tok.bos_id is not None else []
        self.eos = [tok.eos_id] if add_eos and tok.eos_id is not None else []

    def run(self, data, rank: int = 0, world_size: int = 1) -> Iterator[TokDoc]:
        for doc in data:
            ledger = self.ledgers.of(doc.metadata["pass"])
            try:
                ids, mask = self.encode(doc)
            except ChatSkip as skip:
                ledger.drop(skip.args[0], where=str(doc.id), text=doc.text)
                continue
            if len(ids) == 0:
                ledger.drop("no_tokens", where=str(doc.id))
                continue
            yield TokDoc(str(doc.id), ids, mask, pass_no=doc.metadata["pass"])

    def encode(self, doc: Document) -> tuple[np.ndarray, np.ndarray | None]:
        meta = doc.metadata
        if "messages" in meta:
            return render_chat(meta["messages"], self.tok, loss_on_input=meta["loss_on_input"],
                               template=meta.get("template", "llama3"), chat_template=meta.get("chat_template"))
        ids = self.tok.encode(doc.text)
        if self.bos or self.eos:
            ids = np.concatenate([np.asarray(self.bos, dtype=np.uint32), ids, np.asarray(self.eos, dtype=np.uint32)])
        return ids, None


class FilterTokens(Step):
    """Run the token filters (`min_tokens`, `max_tokens`) on tokenized documents."""

    name = "filter tokens"

    def __init__(self, filters: list[Filter], ledgers: TaskLedgers):
        super().__init__()
        self.filters, self.ledgers = [f for f in filters if f.on_tokens], ledgers

    def run(self, data, rank: int = 0, world_size: int = 1) -> Iterator[TokDoc]:
        for doc in data:
            reason = next((r for f in self.filters for keep, r in [f.check(doc)] if not keep), None)
            if reason is None:
                yield doc
            else:
                self.ledgers.of(doc.pass_no).drop(reason, where=doc.doc_id, tokens=len(doc.ids))


class HoldOut(Step):
    """With a recipe `validation:` block, keep back each document whose seeded hash falls under
    the fraction (up to the task's share of `max_docs`): pack it into its bucket's validation
    part and count it as `held_out`; later read passes skip it too, so no held-out document is
    ever trained on."""

    name = "hold out"

    def __init__(self, validation: Validation | None, seed: int, source: str, ledgers: TaskLedgers,
                 sinks: list[BucketSink], writers: dict[str, SubsetWriter], cap: int | None):
        super().__init__()
        self.validation, self.seed, self.source, self.ledgers = validation, seed, source, ledgers
        self.sinks, self.writers, self.cap = sinks, writers, cap
        self.held: set[str] = set()

    def run(self, data, rank: int = 0, world_size: int = 1) -> Iterator[TokDoc]:
        for doc in data:
            if self.validation is None or not self._hold(doc):
                yield doc
                continue
            if doc.pass_no == 0:
                self.ledgers.main.drop("held_out", where=doc.doc_id, tokens=len(doc.ids))
                self._pack(doc)

    def _hold(self, doc: TokDoc) -> bool:
        if doc.doc_id in self.held:
            return True
        if doc.pass_no > 0 or (self.cap is not None and len(self.held) >= self.cap):
            return False
        if unit_hash(self.seed, self.source, doc.doc_id, "validation") < self.validation.fraction:
            self.held.add(doc.doc_id)
            return True
        return False

    def _pack(self, doc: TokDoc) -> None:
        sink = next((s for s in self.sinks if len(doc.ids) >= s.bucket.min_tokens), None)
        if sink is not None:  # shorter than every bucket: it would not have been trained on either
            for item in sink.add(doc):
                self.writers[item.bucket].write(item.row)

    def finish(self) -> dict[str, dict]:
        """Flush the validation packers and writers; their counts per bucket."""
        for sink in self.sinks:
            for item in sink.finish():
                self.writers[item.bucket].write(item.row)
        for writer in self.writers.values():
            writer.finish()
        return {s.bucket.name: {**self.writers[s.bucket.name].counts(), "docs": s.counts["docs"]}
                for s in self.sinks}


class Sample(Step):
    """Keep a document in pass p iff p < repeat - u, u its seeded hash in [0, 1) (mixture.py):
    in pass 1 the rest are dropped (`sampled_out`, `long_removed`); copies kept in later passes
    are counted as documents read. Also records the lengths offered to the buckets."""

    name = "sample"

    def __init__(self, source: Source, seed: int, ledgers: TaskLedgers, progress: TaskProgress):
        super().__init__()
        self.source, self.seed, self.ledger, self.progress = source, seed, ledgers.main, progress
        self.docs_repeated, self.tokens_repeated = 0, 0
        self.seen = LengthHistogram()  # what the source offered the buckets: evidence when one runs short

    def run(self, data, rank: int = 0, world_size: int = 1) -> Iterator[TokDoc]:
        for doc in data:
            if self._use(doc):
                self.seen.add(len(doc.ids))
                self.progress.add_tokens(len(doc.ids))
                yield doc

    def _use(self, doc: TokDoc) -> bool:
        n, p = len(doc.ids), doc.pass_no
        r = doc_repeat(self.source, n)
        use = p < r - unit_hash(self.seed, self.source.name, doc.doc_id)
        if p == 0 and not use:
            self.ledger.drop("long_removed" if r == 0 else "sampled_out", where=doc.doc_id, tokens=n)
        elif p > 0 and use:
            self.ledger.read()
            self.docs_repeated += 1
            self.tokens_repeated += n
        return use



class PackRows(Step):
    """Send each document to the longest bucket whose `min_tokens` it reaches and pack it there
    (`too_short` below every bucket, `over_budget` when its bucket is full); stop reading once
    every bucket is full; at the end flush every packer."""

    name = "pack"

    def __init__(self, sinks: list[BucketSink], ledger: Ledger):
        super().__init__()
        self.sinks, self.ledger = sinks, ledger

    def run(self, data, rank: int = 0, world_size: int = 1) -> Iterator[BucketRow]:
        for doc in data:
            n = len(doc.ids)
            sink = next((s for s in self.sinks if n >= s.bucket.min_tokens), None)
            if sink is None:
                self.ledger.drop("too_short", where=doc.doc_id, tokens=n)
            elif sink.full:
                self.ledger.drop("over_budget", where=doc.doc_id, tokens=n)
            else:
                yield from sink.add(doc)
            if all(s.full for s in self.sinks):
                self.ledger.budget_reached = True
                break
        for sink in self.sinks:
            yield from sink.finish()


class WriteRows(Step):
    """Write each row into its bucket's MDS part; the writers are closed at the end."""

    name = "write"

    def __init__(self, writers: dict[str, SubsetWriter]):
        super().__init__()
        self.writers = writers

    def run(self, data, rank: int = 0, world_size: int = 1) -> Iterator[BucketRow]:
        for item in data:
            self.writers[item.bucket].write(item.row)
        for writer in self.writers.values():
            writer.finish()
        yield from ()
