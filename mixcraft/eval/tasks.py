"""Synthetic long-context tasks: passkey, RULER's needles, variable tracking, common words.

Each task makes a `Sample` of exactly `length` tokens: a prompt (instruction, haystack with
needles, question) followed by the gold answer. Templates follow RULER (Hsieh et al. 2024,
"RULER: What's the Real Context Size of Your Long-Context Language Models?") and the passkey
test of Mohtashami & Jaggi 2023, worded so that a base model's next words are the answer.
Where RULER scores a set by recall, the answer here is one fixed sequence (needles in the
order they appear), because scoring is exact: greedy decoding must reproduce every token.

Randomness is per sample, from (seed, task, length, depth, index): every rank of a
distributed run builds the same samples.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from mixcraft.errors import UserError
from mixcraft.eval.haystack import Haystack, Tokenizer, encode, insert_needles

CLUSTER_GAP = 0.05  # multi-needle tasks: needle j sits at depth + j x 5% of the haystack (clipped to 1)
N_MULTI = 4  # needles for multi-key and multi-value, as RULER's defaults
N_HOPS = 4  # variable tracking: one chain of 5 variables (RULER: num_chains 1, num_hops 4)
CWE_COMMON, CWE_COMMON_FREQ, CWE_RARE_FREQ = 10, 30, 3  # RULER's cwe: 10 words x 30, the rest x 3

# Keys for the needles (RULER draws adjective-noun pairs from `wonderwords`).
ADJECTIVES = ("amber", "brave", "calm", "dusty", "eager", "faint", "gentle", "hollow", "icy", "jolly", "keen",
              "lively", "mellow", "noisy", "olive", "proud", "quiet", "rapid", "silent", "tidy", "urban",
              "vivid", "witty", "young", "zesty", "bitter", "cosmic", "divine", "frozen", "golden")
NOUNS = ("anchor", "badger", "canyon", "dolphin", "ember", "falcon", "glacier", "harbor", "island", "jungle",
         "kettle", "lantern", "meadow", "nebula", "orchard", "pebble", "quarry", "river", "saddle", "tunnel",
         "umbrella", "valley", "walnut", "yacht", "zephyr", "beacon", "cobalt", "dune", "fern", "grove")


@dataclass(frozen=True)
class Sample:
    task: str
    length: int
    depth: float | None  # None for tasks without a needle position (common words)
    context: np.ndarray  # prompt token ids: everything before the answer
    answer: np.ndarray  # gold answer token ids


class Kit:
    """What the task makers share: the tokenizer, the haystack, and words from the haystack."""

    def __init__(self, tok: Tokenizer, haystack: Haystack):
        self.tok, self.haystack = tok, haystack

    @cached_property
    def words(self) -> list[str]:
        words = self.haystack.text_words()
        return words if len(words) >= 200 else sorted(set(words) | {a + n for a in ADJECTIVES for n in NOUNS})


def _number(rng: np.random.Generator, digits: int) -> str:
    return str(int(rng.integers(10 ** (digits - 1), 10**digits)))


def _key(rng: np.random.Generator, taken: set[str]) -> str:
    while True:
        key = f"{ADJECTIVES[rng.integers(len(ADJECTIVES))]}-{NOUNS[rng.integers(len(NOUNS))]}"
        if key not in taken:
            taken.add(key)
            return key


def _cluster(depth: float, n: int) -> list[float]:
    return [min(1.0, depth + j * CLUSTER_GAP) for j in range(n)]


def assemble(kit: Kit, rng: np.random.Generator, task: str, length: int, depth: float | None, *, prefix: str,
             needles: list[tuple[float, str]], question: str, answer: str) -> Sample:
    """Instruction + haystack (with needles) + question, then the answer: exactly `length` tokens."""
    head, q, a = encode(kit.tok, prefix), encode(kit.tok, question), encode(kit.tok, answer)
    spliced = [(d, encode(kit.tok, text)) for d, text in needles]
    fixed = len(head) + len(q) + len(a) + sum(len(ids) for _, ids in spliced)
    if fixed > length:
        raise UserError(f"--lengths {length}: too short for task {task} (its instruction, needles, question "
                        f"and answer take {fixed} tokens); use longer lengths")
    window = kit.haystack.window(rng, length - fixed)
    body = insert_needles(kit.haystack, window, spliced)
    return Sample(task, length, depth, np.concatenate([head, body, q]), a)


def passkey(kit: Kit, rng: np.random.Generator, length: int, depth: float | None) -> Sample:
    key = _number(rng, 5)
    return assemble(
        kit, rng, "passkey", length, depth,
        prefix="There is an important piece of information hidden inside a lot of irrelevant text. Find it and "
               "memorize it. I will quiz you about it.\n",
        needles=[(depth, f"The pass key is {key}. Remember it. {key} is the pass key.\n")],
        question="\nWhat is the pass key? The pass key is", answer=f" {key}")


_NIAH_PREFIX = ("Some special magic numbers are hidden within the following text. Make sure to memorize them. "
                "I will quiz you about the numbers afterwards.\n")


def _niah_needle(key: str, value: str) -> str:
    return f"One of the special magic numbers for {key} is: {value}.\n"


def _niah_question(key: str) -> str:
    return (f"\nWhat is the special magic number for {key} mentioned in the provided text? "
            f"The special magic number for {key} mentioned in the provided text is")


def niah_single(kit: Kit, rng: np.random.Generator, length: int, depth: float | None) -> Sample:
    key, value = _key(rng, set()), _number(rng, 7)
    return assemble(kit, rng, "niah_single", length, depth, prefix=_NIAH_PREFIX,
                    needles=[(depth, _niah_needle(key, value))], question=_niah_question(key), answer=f" {value}")


def niah_multikey(kit: Kit, rng: np.random.Generator, length: int, depth: float | None) -> Sample:
    """One needle at `depth` is asked for; three with other keys are scattered as distractors."""
    taken: set[str] = set()
    keys = [_key(rng, taken) for _ in range(N_MULTI)]
    values = [_number(rng, 7) for _ in keys]
    depths = [depth] + [float(rng.uniform()) for _ in keys[1:]]
    return assemble(kit, rng, "niah_multikey", length, depth, prefix=_NIAH_PREFIX,
                    needles=[(d, _niah_needle(k, v)) for d, k, v in zip(depths, keys, values, strict=True)],
                    question=_niah_question(keys[0]), answer=f" {values[0]}")


def niah_multivalue(kit: Kit, rng: np.random.Generator, length: int, depth: float | None) -> Sample:
    """Four values for one key, from `depth` on; the answer lists them in the order they appear."""
    key, values = _key(rng, set()), [_number(rng, 7) for _ in range(N_MULTI)]
    question = (f"\nWhat are all the special magic numbers for {key} mentioned in the provided text, in the "
                f"order they appear? The special magic numbers for {key} mentioned in the provided text are")
    return assemble(kit, rng, "niah_multivalue", length, depth, prefix=_NIAH_PREFIX,
                    needles=list(zip(_cluster(depth, N_MULTI), [_niah_needle(key, v) for v in values], strict=True)),
                    question=question, answer=" " + ", ".join(values))


def variable_tracking(kit: Kit, rng: np.random.Generator, length: int, depth: float | None) -> Sample:
    """A chain VAR A = 12345, VAR B = VAR A, ... from `depth` on; name every variable holding the value."""
    taken: set[str] = set()
    names = []
    while len(names) < N_HOPS + 1:
        name = "".join(chr(ord("A") + int(c)) for c in rng.integers(0, 26, size=5))
        if name not in taken:
            taken.add(name)
            names.append(name)
    value = _number(rng, 5)
    lines = [f"VAR {names[0]} = {value}\n"] + [f"VAR {b} = VAR {a}\n" for a, b in zip(names, names[1:], strict=False)]
    question = (f"\nQuestion: Find all variables that are assigned the value {value} in the text above. "
                f"Answer: According to the chain of variable assignments in the text above, {len(names)} "
                f"variables are assigned the value {value}, they are:")
    return assemble(kit, rng, "variable_tracking", length, depth,
                    prefix="Memorize and track the chain of variable assignments hidden in the following text.\n",
                    needles=list(zip(_cluster(depth, len(lines)), lines, strict=True)),
                    question=question, answer=" " + " ".join(names))


def common_words(kit: Kit, rng: np.random.Generator, length: int, depth: float | None) -> Sample:
    """A numbered list of the build's words: 10 appear 30 times each (fewer in short contexts), the
    others 3 times. Name the 10."""
    order = rng.permutation(len(kit.words))
    common = [kit.words[i] for i in order[:CWE_COMMON]]
    rare = [kit.words[i] for i in order[CWE_COMMON:]]
    prefix = ("Below is a numbered list of words. In these words, some appear more often than others. "
              "Memorize the ones that appear most often.\n")
    question = (f"\nQuestion: What are the {CWE_COMMON} most common words in the above list, in the order of "
                f"their first appearance? Answer: The top {CWE_COMMON} words that appear most often in the list are:")
    head, q = encode(kit.tok, prefix), encode(kit.tok, question)
    per_entry = len(encode(kit.tok, " 1000. word"))
    fit = max(0, (length - len(head) - len(q)) // per_entry - CWE_COMMON)
    # RULER's 30 repeats of each common word, fewer where that would fill more than half the list
    # (short contexts); always more than the rare words' 3.
    freq = min(CWE_COMMON_FREQ, max(CWE_RARE_FREQ + 1, fit // (2 * CWE_COMMON)))
    n_rare = max(0, fit - CWE_COMMON * freq) // CWE_RARE_FREQ
    shuffle = rng.random(len(rare) * CWE_RARE_FREQ + CWE_COMMON * freq)
    while True:  # drop rare words until the list, question and answer fit; then pad with filler
        items = common * freq + rare[:n_rare] * CWE_RARE_FREQ
        items = [items[i] for i in np.argsort(shuffle[: len(items)], kind="stable")]
        first_seen = sorted(common, key=items.index)
        a = encode(kit.tok, "".join(f" {i + 1}. {w}" for i, w in enumerate(first_seen)))
        listing = encode(kit.tok, "".join(f" {i + 1}. {w}" for i, w in enumerate(items)))
        room = length - len(head) - len(q) - len(a) - len(listing)
        if room >= 0:
            break
        if n_rare == 0:
            raise UserError(f"--lengths {length}: too short for task common_words (its list of "
                            f"{CWE_COMMON} words x {freq} alone takes {len(listing)} tokens); "
                            "use longer lengths")
        n_rare = max(0, n_rare - (-room // (CWE_RARE_FREQ * per_entry) + 1))
    filler = kit.haystack.window(rng, room)
    return Sample("common_words", length, None, np.concatenate([head, filler, listing, q]), a)


@dataclass(frozen=True)
class Task:
    name: str
    make: Callable[[Kit, np.random.Generator, int, float | None], Sample]
    uses_depth: bool = True


TASKS = {t.name: t for t in (
    Task("passkey", passkey), Task("niah_single", niah_single), Task("niah_multikey", niah_multikey),
    Task("niah_multivalue", niah_multivalue), Task("variable_tracking", variable_tracking),
    Task("common_words", common_words, uses_depth=False),
)}


def sample_rng(seed: int, task: str, length: int, depth_index: int, index: int) -> np.random.Generator:
    salt = zlib.crc32(task.encode())
    return np.random.default_rng([seed, salt, length, depth_index, index])


def make_samples(kit: Kit, task: str, *, lengths: list[int], depths: list[float], per_cell: int,
                 seed: int) -> list[Sample]:
    """`per_cell` samples per (length, depth) cell; tasks without a depth get
    `per_cell x len(depths)` samples per length, so every task weighs the same."""
    spec = TASKS[task]
    out = []
    for length in lengths:
        cells = list(enumerate(depths)) if spec.uses_depth else [(0, None)]
        n = per_cell if spec.uses_depth else per_cell * len(depths)
        for d_index, depth in cells:
            for i in range(n):
                out.append(spec.make(kit, sample_rng(seed, task, length, d_index, i), length, depth))
    return out
