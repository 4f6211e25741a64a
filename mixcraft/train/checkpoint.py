"""Resumable checkpoints with torch.distributed.checkpoint (DCP).

A checkpoint is `OUT/checkpoints/step_00000120/`: the sharded model and optimizer state (each
rank writes its own shards, and a different world size can load them), the step, the data
loader's position, each rank's RNG state, and `model.json` (the model's shape, so a later stage
can start from it: `model.init_from`). It is written to `step_*.tmp` and renamed when complete,
so a run killed mid-save resumes from the previous one.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from mixcraft.errors import UserError
from mixcraft.train.model import ModelArgs

PREFIX = "step_"
MODEL_FILE = "model.json"


def step_dir(root: Path, step: int) -> Path:
    return Path(root) / f"{PREFIX}{step:08d}"


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint under `root` (DCP writes `.metadata` last)."""
    done = [p for p in Path(root).glob(f"{PREFIX}*") if p.suffix != ".tmp" and (p / ".metadata").is_file()]
    return max(done, key=lambda p: int(p.name.removeprefix(PREFIX)), default=None)


def rng_state(device: torch.device) -> dict[str, Any]:
    # JSON, not pickle: loading a checkpoint must never execute code from it.
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": json.dumps([name, keys.tolist(), int(pos), int(has_gauss), float(cached)]),
             "python": json.dumps([version, list(internal), gauss_next])}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = json.loads(state["numpy"])
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss_next))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(root: Path, step: int, model, optimizer, loader, *, rank: int, device: torch.device,
                    keep: int, args: ModelArgs) -> Path:
    """Save after `step` optimizer steps; prune to the newest `keep`. Collective: every rank calls it."""
    final, tmp = step_dir(root, step), step_dir(root, step).with_suffix(".tmp")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    dist.barrier()
    model_sd, optim_sd = get_state_dict(model, optimizer)
    # The loader state is global (samples consumed by all ranks), so every rank holds the same
    # value and DCP keeps one copy; RNG state is per rank, so its key names the rank.
    state = {"model": model_sd, "optim": optim_sd,
             "train": {"step": step, "data": json.dumps(loader.state_dict())},
             f"rng_rank{rank}": rng_state(device)}
    dcp.save(state, checkpoint_id=str(tmp))
    dist.barrier()
    if rank == 0:
        (tmp / MODEL_FILE).write_text(json.dumps(dataclasses.asdict(args), indent=1))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        done = sorted((p for p in Path(root).glob(f"{PREFIX}*") if p.suffix != ".tmp"),
                      key=lambda p: int(p.name.removeprefix(PREFIX)))
        for old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return final


def read_model_args(path: Path, where: str) -> ModelArgs:
    """The model shape a checkpoint was saved with."""
    file = Path(path) / MODEL_FILE
    if not file.is_file():
        raise UserError(f"{where}: {file} not found; only checkpoints saved by this trainer version can "
                        "start a new stage (or export to HF and use that)")
    return ModelArgs(**json.loads(file.read_text()))


def load_model_and_optimizer(path: Path, model, optimizer, where: str) -> None:
    """Continue from another run's checkpoint: model weights and AdamW state (moments and step
    counts) only; the data position, step and RNG start afresh (a new stage: new data and schedule)."""
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    try:
        dcp.load(state, checkpoint_id=str(path))
    except (CheckpointException, ValueError, RuntimeError) as err:
        raise UserError(f"{where}: {path}: cannot load into this model/optimizer ({type(err).__name__}); was it "
                        "saved with another model shape?") from err
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])


def load_checkpoint(path: Path, model, optimizer, loader, *, rank: int, device: torch.device) -> int:
    """Restore everything `save_checkpoint` wrote; returns the step to continue from."""
    path = Path(path)
    if not (path / ".metadata").is_file():
        raise UserError(f"{path}: not a complete checkpoint (no .metadata); pick another step_* directory "
                        "or set checkpoint.resume: never")
    saved_keys = dcp.FileSystemReader(str(path)).read_metadata().state_dict_metadata.keys()
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state: dict[str, Any] = {"model": model_sd, "optim": optim_sd, "train": {"step": 0, "data": ""}}
    # After a change of world size a rank may have no saved RNG state; it keeps its seeded one.
    has_rng = any(k.startswith(f"rng_rank{rank}.") for k in saved_keys)
    if has_rng:
        state[f"rng_rank{rank}"] = rng_state(device)
    try:
        dcp.load(state, checkpoint_id=str(path))
    except (CheckpointException, ValueError, RuntimeError) as err:  # CheckpointException is a BaseException
        raise UserError(f"{path}: cannot load into this model/optimizer ({type(err).__name__}); was it saved by "
                        "a run with a different model shape? Set checkpoint.resume: never to start over") from err
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    loader.load_state_dict(json.loads(state["train"]["data"]))
    if has_rng:
        set_rng_state(state[f"rng_rank{rank}"], device)
    return int(state["train"]["step"])
