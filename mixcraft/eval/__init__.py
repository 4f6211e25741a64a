"""Evaluation: validation loss per source, loss by position, and offline long-context tasks.

Below the trainer in the layers: it takes the model as a `Scorer` (scoring.py), so both
`mixcraft eval` and the trainer's `eval:` hook (mixcraft/train/evaluate.py) drive it.
"""
