"""User JSONL tasks: checked input, generation with a KV cache that equals greedy decoding without
one, and exact / substring scoring."""

from __future__ import annotations

import json

import pytest
import torch
from eval_fixtures import tiny_llama

from mixcraft.errors import UserError
from mixcraft.eval.user_tasks import PROMPT, read_user_tasks, run_user_tasks
from mixcraft.train.evaluate import KVGenerator, greedy_without_cache


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


@pytest.mark.parametrize("line,message", [
    ("{not json", r"qa.jsonl:2: not valid JSON"),
    (json.dumps({"context": "c", "question": "q"}), r"qa.jsonl:2: missing key 'answers'"),
    (json.dumps({"context": "c", "question": "q", "answers": []}), r"qa.jsonl:2: answers: expected a string"),
    (json.dumps(["a"]), r"qa.jsonl:2: expected an object"),
])
def test_a_bad_line_is_one_error_naming_file_and_line(tmp_path, line, message):
    path = write_jsonl(tmp_path / "qa.jsonl", [{"context": "c", "question": "q", "answers": "a"}, line])
    with pytest.raises(UserError, match=message):
        read_user_tasks(path)


def test_scores_by_exact_and_substring_match_per_length(tmp_path, tiny_tok):
    records = [{"context": "Paris is in France. " * n, "question": "Where is Paris?", "answers": ["France"],
                "extra_field": 1} for n in (2, 40)]
    path = write_jsonl(tmp_path / "geo.jsonl", records)
    replies = iter(["France\nand more", "It is in France."])

    def generator(prompt_ids, max_new_tokens):
        assert tiny_tok.decode(prompt_ids).endswith("\nQuestion: Where is Paris?\nAnswer:")
        return [int(t) for t in tiny_tok.encode(next(replies))]

    result = run_user_tasks([str(path)], generator, tiny_tok, lengths=[64, 1024], max_new_tokens=8)["geo"]
    assert result["predictions"] == ["France", "It is in France."]
    assert result["exact_match"] == 0.5 and result["substring_match"] == 1.0
    assert result["by_length"]["64"]["exact_match"] == 1.0
    assert result["by_length"]["1024"] == {"exact_match": 0.0, "substring_match": 1.0, "n": 1}


def test_user_tasks_without_a_generator_say_where_they_run(tmp_path, tiny_tok):
    path = write_jsonl(tmp_path / "qa.jsonl", [{"context": "c", "question": "q", "answers": "a"}])
    with pytest.raises(UserError, match="need generation, which `mixcraft eval` runs"):
        run_user_tasks([str(path)], None, tiny_tok, lengths=[64], max_new_tokens=4)


def test_kv_cached_generation_equals_greedy_without_cache_and_shares_weights(tiny_tok):
    torch.manual_seed(0)
    model = tiny_llama(tiny_tok.vocab_size, seed=5)
    gen = KVGenerator(model, torch.device("cpu"), torch.float32, stop_ids=[])
    assert gen.hf.model.embed_tokens.weight.data_ptr() == model.embed_tokens.weight.data_ptr()
    for text in ("Hello there, general", PROMPT.format(context="The sky is blue. " * 20, question="What colour?")):
        prompt = [int(t) for t in tiny_tok.encode(text)]
        expected = greedy_without_cache(model, prompt, 12)
        assert gen(prompt, 12) == expected
        assert len(set(expected)) > 1  # a degenerate repeat would prove little
    stop = greedy_without_cache(model, [1, 2, 3], 4)
    gen.stop = {stop[2]}
    assert gen([1, 2, 3], 4) == stop[:2]
