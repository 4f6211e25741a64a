"""The pure rules: keep rule, LonGen score, output filters, word counts, paragraph split."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from mixcraft.synth.cli import app
from mixcraft.synth.longen import constraint_range
from mixcraft.synth.textops import (
    ResponseFilters,
    check_response,
    count_words,
    first_repeated_ngram,
    length_biased_keep,
    length_ranks,
    longen_range,
    longen_score,
    score_length,
    split_paragraphs,
)


def test_keep_rate_is_about_0595_for_large_n():
    rng = random.Random(0)
    lengths = list(range(200_000))
    rng.shuffle(lengths)
    keep = length_biased_keep(lengths, random.Random(1))
    rate = sum(keep) / len(keep)
    # Expected 2^(-1/3) - 2^(-4/3)/2 = 0.5953; binomial sd at this N is 0.0011.
    assert rate == pytest.approx(2 ** (-1 / 3) - 2 ** (-4 / 3) / 2, abs=0.005)
    assert rate == pytest.approx(0.595, abs=0.005)


def test_keep_rule_favours_long_samples():
    lengths = list(range(100_000))
    keep = length_biased_keep(lengths, random.Random(2))
    ranks = length_ranks(lengths)
    # r > 2^(-1/3) means 2r^3 > 1: the shortest ~21% are never kept.
    assert not any(k for k, r in zip(keep, ranks, strict=True) if r > 2 ** (-1 / 3))
    longest_tenth = keep[-10_000:]
    shortest_half = keep[:50_000]
    assert sum(longest_tenth) / 10_000 > 0.99
    assert sum(shortest_half) / 50_000 < 0.35


def test_ranks_of_ties_are_shared_so_equal_lengths_are_not_all_dropped():
    ranks = length_ranks([5, 5, 5, 5])
    assert len(set(ranks)) == 1 and 0 < ranks[0] < 1
    keep = length_biased_keep([7] * 10_000, random.Random(3))
    assert 0.6 < sum(keep) / 10_000 < 0.9  # r = 1 - 3/8 ... ~0.5 for all: keep ~1 - 2 * 0.5^3
    assert length_ranks([3, 1, 2]) == [pytest.approx(1 / 3), 1.0, pytest.approx(2 / 3)]


@pytest.mark.parametrize(
    ("n_words", "score"),
    [
        (1600, 1.0),
        (2400, 1.0),
        (2000, 1.0),
        (1000, 0.25),
        (3000, 0.5),
        (800, 0.0),
        (3600, 0.0),
        (500, 0.0),
        (4000, 0.0),
    ],
)
def test_longen_about_2000_boundaries(n_words, score):
    lo, hi = longen_range("about", 2000)
    assert (lo, hi) == (1600, 2400)
    assert longen_score(n_words, lo, hi) == pytest.approx(score)


def test_longen_above_and_below_ranges():
    assert longen_range("above", 1000) == (1000, 1500)
    assert longen_range("below", 1000) == (500, 1000)
    assert longen_score(500, *longen_range("above", 1000)) == 0.0  # at lo/2
    assert longen_score(750, *longen_range("above", 1000)) == pytest.approx(0.5)
    assert longen_score(1250, *longen_range("below", 1000)) == pytest.approx(0.5)  # 3 - 2 * 1250/1000
    assert score_length("word " * 2000, "about", 2000) == 1.0
    with pytest.raises(ValueError, match="unknown LonGen"):
        longen_range("roughly", 10)


def test_constraint_text_parsing():
    assert constraint_range("about", "about 2,000 words") == (1600, 2400)
    assert constraint_range("range", "between 500 and 800 words") == (500, 800)
    with pytest.raises(ValueError, match="two numbers"):
        constraint_range("range", "at least 500")


def test_ngram_filter_rejects_a_repeated_10_word_sequence():
    words = [f"w{i}" for i in range(40)]
    repeated = " ".join(words[:30] + words[5:15]) + " end."  # w5..w14 (10 words) occurs twice
    assert first_repeated_ngram(repeated) == tuple(words[5:15])
    assert check_response(repeated) == "repeated_ngram"
    nine = " ".join(words[:30] + words[5:14]) + " end."  # a 9-word repeat is allowed
    assert first_repeated_ngram(nine) is None
    assert check_response(nine) is None


def test_punctuation_filter():
    assert check_response("A finished sentence.") is None
    assert check_response('It ends in a quote: "done"') is None
    assert check_response("Cut off in the middle of a") == "no_final_punctuation"
    assert check_response("   \n") == "empty"
    assert check_response("中文句子。") is None


BODY = "\n".join(f"Line {i} tells of river {i}, delta {i} and year {1900 + i}." for i in range(10))


@pytest.mark.parametrize(("text", "reason"), [
    ("Here is the revised essay:\n" + BODY, "stop_word"),  # line 1
    ("Rivers.\nA new version follows.\n" + BODY, "stop_word"),  # line 2
    ("Rivers.\nDeltas.\nThis paragraph is inside.\n" + BODY, None),  # line 3: neither end
    (BODY + "\nThis response covers it all.", "stop_word"),  # last line
    (BODY + "\nEnd of revision.\nMore.\nDone.", "stop_word"),  # 3rd from the end
    (BODY + "\nEnd of revision.\nMore.\nStill more.\nDone.", None),  # 4th from the end
    ("Revised, as the reference matches: case-sensitive.\n" + BODY, None),
    (BODY + "\nSee the versions above.", "stop_word"),  # a substring counts, as in the reference
])
def test_stop_word_filter_looks_at_the_first_2_and_last_3_lines(text, reason):
    assert check_response(text) == reason
    assert check_response(text, ResponseFilters(stop_words=())) is None  # off: the Chinese pipeline's setting


def test_the_stop_word_filter_runs_after_punctuation_and_before_ngrams():
    assert check_response("This revised text ends without a stop") == "no_final_punctuation"
    words = [f"w{i}" for i in range(30)]
    looping = "A revised opening.\n" + " ".join(words + words) + "."
    assert check_response(looping) == "stop_word"


def test_word_count_counts_cjk_characters_one_each():
    assert count_words("Hello brave new world") == 4
    assert count_words("你好世界 and more") == 6


def test_split_paragraphs_falls_back_to_lines():
    assert split_paragraphs("a\n\nb\n\nc") == (["a", "b", "c"], "\n\n")
    assert split_paragraphs("a\nb\nc\n\nd") == (["a", "b", "c", "d"], "\n")
    assert split_paragraphs("one block") == (["one block"], "\n\n")


def test_length_score_cli(tmp_path):
    path = tmp_path / "gen.jsonl"
    rows = [
        {"type": "about", "constraint": "about 20 words", "response": "w " * 20},
        {"type": "about", "constraint": "about 20 words", "response": "w " * 10},  # 10/16*2-1
        {
            "type": "above",
            "constraint": "more than 10 words",
            "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "w " * 12}],
        },
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = CliRunner().invoke(app, ["length-score", str(path), "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output)
    assert scores["about"] == {"n": 2, "mean": pytest.approx((1 + 0.25) / 2)}
    assert scores["above"]["mean"] == 1.0 and scores["overall"]["n"] == 3
    path.write_text('{"type": "about", "response": "x"}\n')
    bad = CliRunner().invoke(app, ["length-score", str(path)])
    assert bad.exit_code == 2 and "gen.jsonl:1" in bad.output and "constraint" in bad.output
