"""Synthetic long-context data made with the model itself.

- `self_lengthen` + `extender`: Self-Lengthen's Generator/Extender loop for long outputs
  (ROUNDS.md: the loop between rounds).
- `long_qa`: Llama 2 Long's self-instructed QA over long documents.
- `config`: the YAML config of each command (recipes/synth/), loaded by mixcraft.schema.
- `backends`: the async inference interface; `openai_http`, `local_hf` and `fake` implement it.
- `runner` + `journal`: resumable, concurrent (1,000+ requests in flight), budgeted stages.
- `loopback`: a fake OpenAI-compatible server for tests, the benchmark and offline dry runs.

Nothing here is imported by the rest of mixcraft at import time; aiohttp, torch and transformers
load only when the backend that needs them is chosen.
"""
