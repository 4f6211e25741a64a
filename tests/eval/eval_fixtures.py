"""Helpers for the evaluation tests: a tiny BPE tokenizer trained in-process, a small build of
real prose in the `mixcraft build` layout, and tiny Llamas (random, or trained to retrieve).

The prose is Python's own documentation (`pydoc_data.topics`, in every CPython install): real
sentences with almost no digits, so a needle's number is the only number in its context.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from mixcraft.core.manifest import (
    MANIFEST_VERSION,
    Manifest,
    RecipeRef,
    Stream,
    SubsetPart,
    TokenizerInfo,
    write_manifest,
)
from mixcraft.core.tokenize import Tok, load_tokenizer
from mixcraft.eval.haystack import Haystack
from mixcraft.eval.scoring import pack_documents, sample_arrays
from mixcraft.eval.tasks import Kit, passkey
from mixcraft.mds import shard_files
from mixcraft.train.model import Llama, ModelArgs

ASSET = Path(__file__).parent / "assets" / "retriever"  # written by `python tests/eval/eval_fixtures.py`
RETRIEVER_STEPS, RETRIEVER_LENGTHS = 2000, (96, 257)
COLUMNS = {"input_ids": "ndarray:uint32", "indices": "ndarray:uint32", "domain": "str", "length": "int"}
# The task templates are in the tokenizer's training text, so their words are single tokens and a
# prompt takes ~60 tokens: short contexts (128-256) still hold a real haystack.
TEMPLATES = (
    "There is an important piece of information hidden inside a lot of irrelevant text. Find it and memorize it. "
    "I will quiz you about it.\nThe pass key is 12345. Remember it. 12345 is the pass key.\n"
    "What is the pass key? The pass key is 12345\n"
    "Some special magic numbers are hidden within the following text. Make sure to memorize them. I will quiz "
    "you about the numbers afterwards.\nOne of the special magic numbers for calm-river is: 1234567.\n"
    "What is the special magic number for calm-river mentioned in the provided text? The special magic number "
    "for calm-river mentioned in the provided text is 1234567\n"
)


def prose() -> list[str]:
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)]


def train_tokenizer(path: Path, vocab_size: int = 1000) -> Tok:
    """A byte-level BPE with single-digit tokens, saved as tokenizer.json and loaded the way
    `mixcraft eval` loads a build's tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False)])
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|end_of_text|>"], show_progress=False)
    hf.train_from_iterator(["\n\n".join(prose())[:300_000], TEMPLATES * 50], trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    hf.save(str(path))
    return load_tokenizer(str(path))


def pack_greedy(docs: list[np.ndarray], seq_len: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """ProLong packing: concatenated, cut every seq_len tokens, a document continuing in the next row."""
    rows, ids, spans, filled = [], [], [], 0
    for doc in docs:
        while len(doc):
            take = min(len(doc), seq_len - filled)
            ids.append(doc[:take])
            spans.append((filled, filled + take))
            filled += take
            doc = doc[take:]
            if filled == seq_len:
                rows.append((np.concatenate(ids).astype(np.uint32), np.array(spans, dtype=np.uint32)))
                ids, spans, filled = [], [], 0
    return rows


def write_build(out: Path, tok: Tok, *, seq_len: int = 256, rows: int = 6, validation: bool = False) -> Path:
    """OUT/manifest.json (the typed manifest) naming `tok`, and two sources of prose rows, with
    `val` subsets of other documents if asked."""
    from streaming import MDSWriter

    texts = prose()
    streams, shards = [], {}
    for k, source in enumerate(("manual", "reference")):
        docs = [tok.encode(t).astype(np.int64) for t in texts[k::2][:80]]
        packed = pack_greedy(docs, seq_len)
        train, held = packed[:rows], packed[rows:2 * rows]
        path = f"{source}/{seq_len}"
        for subset, part in [(path, train)] + ([(f"{path}/val", held)] if validation else []):
            with MDSWriter(out=str(out / subset), columns=COLUMNS, compression="zstd", hashes=["sha1"]) as writer:
                for ids, spans in part:
                    writer.write({"input_ids": ids, "indices": spans, "domain": source, "length": seq_len})
        shards[path] = shard_files(out / path)
        val = SubsetPart(path=f"{path}/val", rows=len(held), tokens=len(held) * seq_len, docs=0) if validation \
            else None
        streams.append(Stream(source=source, bucket=str(seq_len), path=path, proportion=0.5, target_proportion=0.5,
                              target_tokens=None, domain=source, mask=False, packing="prolong", rows=len(train),
                              tokens=len(train) * seq_len, pieces=sum(len(sp) for _, sp in train), docs=0, split=0,
                              tail_tokens=0, padding=0, validation=val))
    info = tok.describe()
    manifest = Manifest(manifest_version=MANIFEST_VERSION, mixcraft_version="test", seed=0, seq_len=seq_len,
                        recipe=RecipeRef(name="eval-fixture", path="-", sha256="0" * 64), total_tokens=None,
                        tokenizer=TokenizerInfo(**{**info, "name": str(tok.json_path)}), streams=streams,
                        prolong_streams=[], ledger={}, sources={}, shards=shards)
    write_manifest(out, manifest)
    return out


def tiny_llama(vocab_size: int, *, dim: int = 64, seed: int = 0, max_seq_len: int = 512) -> Llama:
    args = ModelArgs(dim=dim, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=4 * dim, vocab_size=vocab_size,
                     max_seq_len=max_seq_len)
    model = Llama(args)
    model.init_weights(torch.Generator().manual_seed(seed))
    return model.eval()


def train_retriever(tok: Tok, *, steps: int = RETRIEVER_STEPS, seed: int = 0, batch: int = 8, lr: float = 3e-3,
                    lengths: tuple[int, int] = RETRIEVER_LENGTHS) -> Llama:
    """A tiny Llama trained on a synthetic key-value retrieval corpus: passkey documents (prose
    haystack, a needle at a uniform depth, the question and answer), next-token loss on every
    token. Cosine schedule with 10% warmup, one CPU thread (2 shared cores thrash with 2)."""
    model = tiny_llama(tok.vocab_size, seed=seed).train()
    kit = Kit(tok, Haystack(tok, [tok.encode(t) for t in prose()[1::2][:60]], origin="pydoc topics"))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    rng = np.random.default_rng(seed + 1_000)  # training keys come from another stream than any test's
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for step in range(steps):
            scale = min(1.0, (step + 1) / max(1, steps // 10)) * (0.1 + 0.45 * (1 + math.cos(math.pi * step / steps)))
            for group in opt.param_groups:
                group["lr"] = lr * scale
            docs = []
            for _ in range(batch):
                sample = passkey(kit, np.random.default_rng(rng.integers(1 << 62)), int(rng.integers(*lengths)),
                                 float(rng.uniform()))
                ids, _, positions = sample_arrays(sample.context, sample.answer)
                docs.append((ids, np.append(ids[1:], -100), positions))
            b = pack_documents(docs)
            loss = model(b.input_ids, b.position_ids, b.cu_seqlens, b.max_seqlen, b.targets)
            (loss / (b.targets != -100).sum()).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def write_asset(out: Path = ASSET, model: Llama | None = None, tok_path: Path | None = None) -> Path:
    """Train the retriever (about 5 minutes on 2 shared cores) and export it with its tokenizer
    as an HF Llama directory, the committed fixture of tests/eval/test_retrieval.py."""
    import shutil

    from mixcraft.train.hf import export_hf

    out.mkdir(parents=True, exist_ok=True)
    if model is None:
        tok = train_tokenizer(out / "tokenizer.json")
        model = train_retriever(tok)
    elif tok_path is not None:
        shutil.copy(tok_path, out / "tokenizer.json")
    export_hf(model.state_dict(), model.args, out, dtype=torch.bfloat16)
    return out


if __name__ == "__main__":
    print(write_asset())
