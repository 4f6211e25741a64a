"""The task's steps one at a time (build/steps.py): each does what its contract says and counts
what it drops."""

import numpy as np
import pytest
from datatrove.data import Document

from mixcraft.build.steps import FilterText, FilterTokens, TaskLedgers, Tokenize
from mixcraft.core.ledger import Ledger, ledger_faults
from mixcraft.core.pack import TokDoc
from mixcraft.curate.filters import MaxTokens, MinChars, build_filters


def _doc(text, doc_id="a", pass_no=0):
    return Document(text=text, id=doc_id, metadata={"pass": pass_no, "ordinal": 0})


@pytest.mark.parametrize("add_bos,add_eos", [(False, False), (True, False), (False, True), (True, True)])
def test_tokenize_adds_bos_and_eos_only_when_asked(tok, add_bos, add_eos):
    step = Tokenize(tok, TaskLedgers(Ledger("s")), add_bos=add_bos, add_eos=add_eos)
    (out,) = step([_doc("Hello world")], 0, 1)
    expect = [128000] * add_bos + [9906, 1917] + [128001] * add_eos
    assert out.ids.tolist() == expect and out.ids.dtype == np.uint32


def test_filters_drop_with_their_reason_and_later_passes_count_in_scratch(tmp_path):
    ledgers = TaskLedgers(Ledger("s"))
    for _ in range(2):
        ledgers.main.read()
    filters = build_filters((MinChars(value=10), MaxTokens(value=3)), tmp_path)
    kept = list(FilterText(filters, ledgers)([_doc("short", "x"), _doc("long enough", "y"),
                                              _doc("short", "z", pass_no=1)], 0, 1))
    assert [d.id for d in kept] == ["y"]
    assert ledgers.main.docs_dropped == {"too_few_chars": 1}, "pass 2's drop goes to the scratch ledger"
    assert ledgers.scratch.docs_dropped == {"too_few_chars": 1}
    toks = [TokDoc("y", np.zeros(5, dtype=np.uint32))]
    assert list(FilterTokens(filters, ledgers)(toks, 0, 1)) == []
    assert ledgers.main.docs_dropped["too_many_tokens"] == 1
    assert not ledger_faults("s", ledgers.main.to_dict())
