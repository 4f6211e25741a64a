"""Process bodies for the context-parallel tests (torch.multiprocessing.spawn needs them in an
importable module). Each rank computes its slice's loss and gradients; the sums over ranks are
what the trainer's FSDP reduction would produce, and must equal one process on whole rows."""

from __future__ import annotations

import torch
import torch.distributed as dist

from mixcraft.train.context import slice_tokens
from mixcraft.train.model import Llama, ModelArgs

# A row of 96 tokens whose 6 documents are cut by the split points of cp=2 (48) and cp=4 (24,
# 48, 72): documents 2, 3 and 5 cross them.
DOC_LENGTHS = (10, 12, 30, 20, 4, 20)
VOCAB = 128


def make_row(seed: int = 0, masked: bool = True):
    """ids, positions, cu_seqlens, max_seqlen, targets of one packed row (targets masked as the
    trainer does: none across a document start; with `masked`, SFT-like gaps too)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (sum(DOC_LENGTHS),), generator=g)
    pos = torch.cat([torch.arange(n) for n in DOC_LENGTHS])
    cu = torch.tensor([0, *torch.tensor(DOC_LENGTHS).cumsum(0).tolist()], dtype=torch.int32)
    targets = torch.full_like(ids, -100)
    targets[:-1] = ids[1:]
    targets[cu[1:-1].long() - 1] = -100
    if masked:
        targets[5:9] = -100
    return ids, pos, cu, max(DOC_LENGTHS), targets


def make_model(args: ModelArgs, checkpointing: bool, cp_group) -> Llama:
    model = Llama(args)
    model.init_weights(torch.Generator().manual_seed(0))
    model.configure(attention="sdpa", activation_checkpointing=checkpointing, loss_chunk_tokens=16,
                    cp_group=cp_group)
    return model


def loss_and_grads(args: ModelArgs, checkpointing: bool, cp: int, rank: int, cp_group, split_documents: bool = False):
    """Mean loss over valid targets and d(mean loss)/d(params) for this rank's slice.
    `split_documents` is the negative control: each rank attends only within its own slice
    (ProLong issue #17), which must NOT match."""
    ids, pos, cu, max_len, targets = make_row()
    n_valid = int((targets != -100).sum())
    model = make_model(args, checkpointing, None if split_documents else cp_group)
    local = [slice_tokens(t, rank, cp) for t in (ids, pos, targets)]
    if split_documents:
        starts = torch.nonzero(local[1] == 0).flatten().tolist()
        if not starts or starts[0] != 0:
            starts = [0, *starts]  # a document cut by the split: its tail starts this slice
        cu = torch.tensor([*starts, len(local[0])], dtype=torch.int32)
        max_len = int((cu[1:] - cu[:-1]).max())
    loss = model(local[0], local[1], cu, max_len, local[2]) / n_valid
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


CASES = {
    "gqa": dict(args=dict(n_kv_heads=2), checkpointing=False),
    "kv_heads_fewer_than_ranks": dict(args=dict(n_kv_heads=1), checkpointing=False),
    "activation_checkpointing": dict(args=dict(n_kv_heads=2), checkpointing=True),
}


def case_args(changes: dict) -> ModelArgs:
    return ModelArgs(**{**dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=96, vocab_size=VOCAB,
                               rope_theta=10000.0), **changes})


def cp_worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    """Run every case (and the split-documents control) on this rank; rank 0 saves the sums."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    results = {}
    for name, case in {**CASES, "split_documents": CASES["gqa"]}.items():
        loss, grads = loss_and_grads(case_args(case["args"]), case["checkpointing"], world, rank, dist.group.WORLD,
                                     split_documents=name == "split_documents")
        dist.all_reduce(loss)
        for g in grads.values():
            dist.all_reduce(g)
        results[name] = (loss, grads)
    if rank == 0:
        torch.save(results, out_file)
    dist.destroy_process_group()


def trainer_worker(rank: int, world: int, port: int, argv: list[str], out_dir: str) -> None:
    """`python -m mixcraft.train ARGV` as rank `rank` of `world`, with the environment torchrun
    gives its workers; writes the exit code, stdout and stderr to out_dir/rank{rank}.*. Unlike
    torchrun, nothing kills the other ranks when one exits, so each rank's message can be checked."""
    import contextlib
    import io
    import os
    from pathlib import Path

    from mixcraft.train.__main__ import main

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    for suffix, text in (("code", str(code)), ("out", out.getvalue()), ("err", err.getvalue())):
        Path(out_dir, f"rank{rank}.{suffix}").write_text(text)


def launch(argv: list[str], nproc: int, out_dir) -> list[tuple[int, str, str]]:
    """Run the trainer on `nproc` CPU processes; [(exit code, stdout, stderr)] by rank."""
    from pathlib import Path

    import torch.multiprocessing as mp
    from train_fixtures import free_port

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mp.spawn(trainer_worker, args=(nproc, free_port(), [str(a) for a in argv], str(out_dir)), nprocs=nproc, join=True)
    return [(int((out_dir / f"rank{r}.code").read_text()), (out_dir / f"rank{r}.out").read_text(),
             (out_dir / f"rank{r}.err").read_text()) for r in range(nproc)]
