"""Which rows each rank trains on at each micro-batch of a step.

Every rank reads its share of the step's rows from the loader (streaming partitions them over
all ranks, so resume and the data order do not depend on context parallelism). Then:
- context parallelism: the ranks of a context-parallel group must train on the same rows
  (each on its own slice of them), so the group pools what its ranks read;
- balance: packed rows cost the same dense FLOPs but not the same attention FLOPs (sum of
  squared document lengths: one 64K document costs 32x a row of 2K documents), and data
  parallel ranks wait for the slowest at every micro-batch. With `balance` the whole world
  pools its rows and deals them out, seeded, so the ranks of each micro-batch get rows of
  similar attention cost.
Rows move between ranks as one (rows, 3, row_tokens) int32 tensor: ids, targets, positions.
The step's loss is a sum over its rows, so who trains on which row changes nothing else.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from mixcraft.train.data import PackedBatch, batch_from_rows
from mixcraft.train.parallel import DistEnv


def attention_costs(rows: torch.Tensor) -> np.ndarray:
    """Sum of squared document-piece lengths per row of a (rows, 3, L) tensor."""
    pos = rows[:, 2].numpy()
    costs = np.empty(len(pos), dtype=np.float64)
    for i, p in enumerate(pos):
        starts = np.union1d([0], np.flatnonzero(p == 0))  # a row always starts a piece
        lens = np.diff(np.append(starts, len(p))).astype(np.float64)
        costs[i] = float((lens**2).sum())
    return costs


def assign_rows(costs: np.ndarray, *, n_ranks: int, rows_per_micro: int, seed: int,
                balance: bool) -> list[list[list[int]]]:
    """[rank][micro] -> row indices: every row once, `rows_per_micro` rows per micro-batch.

    Balanced: rows sorted by cost (ties in seeded random order) are dealt micro-batch by
    micro-batch, so the rows trained at the same time have similar costs, and within a
    micro-batch each row goes to the least loaded rank with room (longest first). Unbalanced:
    rows in the order given, rank-major.
    """
    n = len(costs)
    per_micro = n_ranks * rows_per_micro
    if n % per_micro:
        raise ValueError(f"{n} rows do not split into micro-batches of {rows_per_micro} rows on {n_ranks} ranks")
    n_micro = n // per_micro
    if not balance:
        per_rank = n // n_ranks
        return [[list(range(r * per_rank + m * rows_per_micro, r * per_rank + (m + 1) * rows_per_micro))
                 for m in range(n_micro)] for r in range(n_ranks)]
    order = np.random.default_rng(seed).permutation(n)
    order = order[np.argsort(-costs[order], kind="stable")]
    plan: list[list[list[int]]] = [[[] for _ in range(n_micro)] for _ in range(n_ranks)]
    for m in range(n_micro):
        load = np.zeros(n_ranks)
        for row in order[m * per_micro:(m + 1) * per_micro]:
            open_ranks = [r for r in range(n_ranks) if len(plan[r][m]) < rows_per_micro]
            r = min(open_ranks, key=lambda k: (load[k], k))
            plan[r][m].append(int(row))
            load[r] += costs[row]
    return plan


def step_batches(loaded: list[PackedBatch], env: DistEnv, *, balance: bool, seed: int, step: int) -> list[PackedBatch]:
    """The whole-row micro-batches this rank's data-parallel group trains on in this step (under
    context parallelism each rank then takes its slice of every one). Collective when rows move."""
    pool_world = balance and env.dp > 1
    if not pool_world and env.cp == 1:
        return loaded
    rows_per_micro = loaded[0].n_rows
    mine = torch.cat([b.rows() for b in loaded])
    group = None if pool_world else env.cp_group  # None: the whole world
    pooled = _all_gather(mine, group, env.device)
    n_ranks, me = (env.dp, env.dp_rank) if pool_world else (1, 0)
    plan = assign_rows(attention_costs(pooled), n_ranks=n_ranks, rows_per_micro=rows_per_micro,
                       seed=seed * 1_000_003 + step, balance=balance)
    return [batch_from_rows(pooled[idx]) for idx in plan[me]]


def _all_gather(rows: torch.Tensor, group: dist.ProcessGroup | None, device: torch.device) -> torch.Tensor:
    """Concatenate every group member's rows in rank order (on the GPU when there is one: NCCL)."""
    size = dist.get_world_size(group)
    local = rows.to(device)
    out = torch.empty((size * local.shape[0], *local.shape[1:]), dtype=local.dtype, device=device)
    # torch 2.14 renamed all_gather_into_tensor (deprecated there) to all_gather_single; 2.11 has only the old name.
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    gather(out, local, group=group)
    return out.cpu()
