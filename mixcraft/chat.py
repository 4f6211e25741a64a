"""Chat rendering for SFT: messages -> token ids plus a loss mask.

The Llama-3 chat format, built from the tokenizer's own special tokens:

    <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\\n\\n{content}<|eot_id|> ...

`mask[i] == 1` means token i counts in the loss: the content of assistant turns and the
`<|eot_id|>` that closes each (so the model learns to stop). Headers never count. With
`loss_on_input`, user and system content count too (Llama 2 Long's ablation: LM loss on the
long inputs helps).
"""

from __future__ import annotations

import numpy as np

from mixcraft.tokenize import Tok


def render_llama3(messages: list[dict[str, str]], tok: Tok, *, loss_on_input: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    bos = tok.special_id("<|begin_of_text|>")
    start, end, eot = (tok.special_id(t) for t in ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"))
    ids: list[np.ndarray] = [np.asarray([bos], dtype=np.uint32)]
    mask: list[np.ndarray] = [np.zeros(1, dtype=np.uint8)]
    for m in messages:
        header = np.concatenate([[start], tok.encode(m["role"]), [end], tok.encode("\n\n")]).astype(np.uint32)
        body = np.concatenate([tok.encode(m["content"]), [eot]]).astype(np.uint32)
        counts = m["role"] == "assistant" or loss_on_input
        ids += [header, body]
        mask += [np.zeros(len(header), dtype=np.uint8), np.full(len(body), 1 if counts else 0, dtype=np.uint8)]
    return np.concatenate(ids), np.concatenate(mask)
