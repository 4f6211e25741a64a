"""Process group, the (data parallel x context parallel) device mesh, FSDP2 sharding, and
materializing the model's weights across ranks.

One code path for 1 or N processes: a single process gets a 1-rank group (gloo on CPU), so
sharding, checkpointing and the full-state-dict export are the same code that runs on a
cluster under torchrun. Ranks are laid out row-major on the mesh: rank = dp_rank * cp + cp_rank,
so a context-parallel group is `cp` neighbouring ranks (one node's NVLink for cp <= 8).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    set_model_state_dict,
)
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from mixcraft.errors import UserError
from mixcraft.train.hf import load_hf_weights
from mixcraft.train.model import Llama, ModelArgs


@dataclass
class DistEnv:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    mesh: DeviceMesh  # 2-D: ("dp", "cp")
    # FSDP shards over every rank: context-parallel ranks hold the same weights and each computes
    # a partial gradient from its slice of the tokens, so gradients are summed over the flattened
    # (dp, cp) mesh, as in torchtitan.
    fsdp_mesh: DeviceMesh
    owns_group: bool  # we created the process group, so we tear it down

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def cp(self) -> int:
        return self.mesh["cp"].size()

    @property
    def cp_rank(self) -> int:
        return self.mesh["cp"].get_local_rank()

    @property
    def dp(self) -> int:
        return self.mesh["dp"].size()

    @property
    def dp_rank(self) -> int:
        return self.mesh["dp"].get_local_rank()

    @property
    def cp_group(self) -> dist.ProcessGroup | None:
        return self.mesh["cp"].get_group() if self.cp > 1 else None


def init_distributed(device_setting: str, context_parallel: int, where: str) -> DistEnv:
    """Join the torchrun group if launched by torchrun, else make a 1-rank group; build the mesh."""
    cuda = torch.cuda.is_available() and device_setting != "cpu"
    if device_setting == "cuda" and not cuda:
        raise UserError(f"{where}: train.device: cuda requested but no CUDA device is visible")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        # gloo for CPU tensors (and streaming's barriers), nccl for CUDA ones.
        backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
        timeout = datetime.timedelta(minutes=30)  # the first step at 512K can take minutes
        if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
            dist.init_process_group(backend, timeout=timeout, device_id=device if cuda else None)
        else:
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)
    world = dist.get_world_size()
    if world % context_parallel:
        if owns:
            dist.destroy_process_group()
        raise UserError(f"{where}: train.context_parallel: {context_parallel} does not divide the world size "
                        f"{world}; launch a multiple of {context_parallel} processes (torchrun --nproc_per_node)")
    mesh = init_device_mesh(device.type, (world // context_parallel, context_parallel), mesh_dim_names=("dp", "cp"))
    return DistEnv(dist.get_rank(), world, local_rank, device, mesh, mesh["dp", "cp"]._flatten("dp_cp"), owns)


def shutdown(env: DistEnv | None) -> None:
    if env is not None and env.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def compute_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float32


def shard_model(model: Llama, env: DistEnv, dtype: torch.dtype) -> None:
    """FSDP2: each block is its own all-gather unit, then the root (embeddings, norm, head).

    Master weights, gradients and optimizer state stay fp32; the forward/backward run in
    `dtype`, and gradients are reduced in fp32 so 1000s of ranks summing bf16 do not lose bits.
    """
    mp = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
    mesh = env.fsdp_mesh
    for block in model.layers:
        fully_shard(block, mesh=mesh, mp_policy=mp)
    # The root's params are needed first in backward (the loss head), so keep them gathered.
    fully_shard(model, mesh=mesh, mp_policy=mp, reshard_after_forward=False)


def build_model(args: ModelArgs, env: DistEnv, *, dtype: torch.dtype, seed: int, hf_init: str | None,
                load_weights: bool, where: str) -> Llama:
    """A sharded model whose weights are the HF checkpoint's (`hf_init`) or a seeded init,
    identical for any world size: rank 0 builds the full fp32 state and broadcasts it into every
    rank's shards. With `load_weights=False` (a DCP checkpoint is about to be loaded) the
    weights are left empty."""
    with torch.device("meta"):
        model = Llama(args)
    shard_model(model, env, dtype)
    model.to_empty(device=env.device)  # FSDP2 keeps tied parameters tied through this
    if load_weights:
        full = _full_state(args, seed, hf_init, where) if env.is_main else {}
        set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    return model


def _full_state(args: ModelArgs, seed: int, hf_init: str | None, where: str) -> dict[str, torch.Tensor]:
    if hf_init is not None:
        return load_hf_weights(hf_init, args, where)
    model = Llama(args)
    model.init_weights(torch.Generator().manual_seed(seed))
    return model.state_dict()


def full_state_dict(model: Llama) -> dict[str, torch.Tensor]:
    """Unsharded fp32 weights on rank 0's CPU (empty on the other ranks), for export."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
