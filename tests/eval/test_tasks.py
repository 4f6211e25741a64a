"""The synthetic tasks: exact lengths, the answer really is in the context where the depth says,
deterministic samples, and clear errors for lengths that cannot hold a task."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
from eval_fixtures import prose

from mixcraft.errors import UserError
from mixcraft.eval.haystack import Haystack, insert_needles
from mixcraft.eval.tasks import TASKS, Kit, make_samples


@pytest.fixture(scope="module")
def kit(tiny_tok):
    return Kit(tiny_tok, Haystack(tiny_tok, [tiny_tok.encode(t) for t in prose()[:40]], origin="test"))


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("length", [512, 1500])
def test_every_sample_has_exactly_the_length(kit, task, length):
    samples = make_samples(kit, task, lengths=[length], depths=[0.0, 0.5, 1.0], per_cell=2, seed=3)
    assert len(samples) == 6
    for s in samples:
        assert len(s.context) + len(s.answer) == length
        assert len(s.answer) > 0


def test_samples_are_deterministic_and_differ_by_index(kit):
    a = make_samples(kit, "niah_single", lengths=[400], depths=[0.5], per_cell=2, seed=11)
    b = make_samples(kit, "niah_single", lengths=[400], depths=[0.5], per_cell=2, seed=11)
    assert all(np.array_equal(x.context, y.context) and np.array_equal(x.answer, y.answer)
               for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0].answer, a[1].answer)


@pytest.mark.parametrize("depth", [0.0, 0.3, 0.7, 1.0])
def test_passkey_needle_sits_at_its_depth(kit, tiny_tok, depth):
    (s,) = make_samples(kit, "passkey", lengths=[2000], depths=[depth], per_cell=1, seed=5)
    key = tiny_tok.decode(s.answer).strip()
    text = tiny_tok.decode(s.context)
    assert re.fullmatch(r"\d{5}", key)
    needle = text.index(f"The pass key is {key}.")
    body_start = text.index("I will quiz you about it.\n") + len("I will quiz you about it.\n")
    body_end = text.rindex("\nWhat is the pass key?")
    at = (needle - body_start) / (body_end - body_start)
    assert abs(at - depth) < 0.08, (at, depth)  # snapping moves it a few dozen tokens at most


def test_multikey_asks_for_one_of_four_distinct_keys(kit, tiny_tok):
    (s,) = make_samples(kit, "niah_multikey", lengths=[1500], depths=[0.25], per_cell=1, seed=2)
    text = tiny_tok.decode(s.context)
    needles = re.findall(r"One of the special magic numbers for ([a-z]+-[a-z]+) is: (\d{7})\.", text)
    assert len({k for k, _ in needles}) == 4
    asked = re.search(r"magic number for ([a-z]+-[a-z]+) mentioned in the provided text\?", text).group(1)
    assert dict(needles)[asked] == tiny_tok.decode(s.answer).strip()


def test_multivalue_answer_lists_values_in_order_of_appearance(kit, tiny_tok):
    for s in make_samples(kit, "niah_multivalue", lengths=[1500], depths=[0.0, 0.9, 1.0], per_cell=1, seed=4):
        values = re.findall(r"One of the special magic numbers for [a-z-]+ is: (\d{7})\.", tiny_tok.decode(s.context))
        assert len(values) == 4
        assert tiny_tok.decode(s.answer).strip() == ", ".join(values)


def test_variable_tracking_chain_resolves_to_the_answer(kit, tiny_tok):
    (s,) = make_samples(kit, "variable_tracking", lengths=[1500], depths=[0.5], per_cell=1, seed=8)
    text = tiny_tok.decode(s.context)
    value = re.search(r"assigned the value (\d+) in the text above", text).group(1)
    holds = {m.group(1) for m in re.finditer(rf"VAR ([A-Z]{{5}}) = {value}\n", text)}
    for a, b in re.findall(r"VAR ([A-Z]{5}) = VAR ([A-Z]{5})\n", text):
        if b in holds:
            holds.add(a)
    assert sorted(holds) == sorted(tiny_tok.decode(s.answer).split())
    assert len(holds) == 5


def test_common_words_answer_is_the_ten_most_frequent_in_first_seen_order(kit, tiny_tok):
    (s,) = make_samples(kit, "common_words", lengths=[3000], depths=[0.5], per_cell=1, seed=1)
    text = tiny_tok.decode(s.context)
    listing = text[text.index(" 1. "):text.index("\nQuestion:")]
    words = re.findall(r" \d+\. ([a-z]+)", listing)
    counts = Counter(words)
    answer = re.findall(r" \d+\. ([a-z]+)", tiny_tok.decode(s.answer))
    assert len(answer) == 10
    assert len({counts[w] for w in answer}) == 1 and counts[answer[0]] >= 4
    assert max(c for w, c in counts.items() if w not in answer) == 3
    assert answer == sorted(answer, key=words.index)


def test_a_length_too_short_for_the_task_is_one_clear_error(kit):
    with pytest.raises(UserError, match=r"--lengths 40: too short for task passkey"):
        make_samples(kit, "passkey", lengths=[40], depths=[0.5], per_cell=1, seed=0)
    with pytest.raises(UserError, match=r"too short for task common_words"):
        make_samples(kit, "common_words", lengths=[150], depths=[0.5], per_cell=1, seed=0)


def test_needles_keep_their_order_when_snapped(tiny_tok):
    hay = Haystack(tiny_tok, [tiny_tok.encode("line one\nline two\nline three\n" * 50)], origin="t")
    window = hay.window(np.random.default_rng(0), 300)
    marks = [np.array([10_000 + k]) for k in range(4)]
    out = insert_needles(hay, window, [(0.50, marks[2]), (0.49, marks[1]), (0.5, marks[3]), (0.0, marks[0])])
    where = [int(np.flatnonzero(out == 10_000 + k)[0]) for k in range(4)]
    assert where == sorted(where)
    assert len(out) == 304
