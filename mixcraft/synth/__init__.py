"""Synthetic long-context data made with the model itself.

- `self_lengthen`: Self-Lengthen's Generator/Extender loop for long outputs (ROUNDS.md: the loop).
- `long_qa`: Llama 2 Long's self-instructed QA over long documents.
- `backends`: the inference interface; `openai_http`, `local_hf` and `fake` implement it.
- `runner` + `journal`: resumable, concurrent, budgeted stages.

Nothing here is imported by the rest of mixcraft at import time; torch and transformers load
only when the transformers backend is chosen.
"""
