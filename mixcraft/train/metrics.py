"""FLOP accounting, MFU, and the rank-0 log line / JSONL / TensorBoard output.

MFU here is model FLOPs (no recompute) over the device's dense bf16 peak. Attention is counted
per document piece, sum(len^2), never as if a packed row were one sequence: a 64K row of 2K
documents does 1/32 of the attention work of one 64K document.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import torch

from mixcraft.train.model import ModelArgs

# Dense bf16 tensor-core peak per device, TFLOP/s, from the vendors' datasheets (no sparsity).
# Matched against torch.cuda.get_device_name(), most specific first.
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("GH200", 989.0), ("H200", 989.0), ("H100", 989.0),
    ("H800", 989.0), ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("A10G", 70.0),
)


def train_flops(args: ModelArgs, n_tokens: int, sum_sq_doc_lens: int) -> float:
    """Forward + backward FLOPs: 6 per matmul parameter per token, plus causal attention.

    Causal attention over a document of length L does QK^T and AV over L^2/2 (query, key)
    pairs at 2 * head_dim FLOPs each per head: 2 * L^2 * heads * head_dim forward, x3 with backward.
    """
    dense = 6.0 * args.matmul_params() * n_tokens
    attention = 6.0 * args.n_layers * args.n_heads * args.head_dim * sum_sq_doc_lens
    return dense + attention


def peak_flops(setting: float | str, device: torch.device) -> float | None:
    """Peak FLOP/s per device: the configured number, or looked up for a known GPU; None if unknown."""
    if not isinstance(setting, str):
        return setting * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tf * 1e12 for key, tf in PEAK_BF16_TFLOPS if key in name), None)


def memory_gib(device: torch.device) -> float:
    """Peak memory: CUDA allocator peak on GPU, process peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 2**20


def format_eta(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes >= 60:
        return f"{minutes // 60}h{minutes % 60:02d}m"
    return f"{minutes}m{int(seconds % 60):02d}s"


def format_rate(tokens_per_s: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if tokens_per_s >= scale:
            return f"{tokens_per_s / scale:.1f}{unit}"
    return f"{tokens_per_s:.0f}"


def format_line(*, step: int, total: int, loss: float, lr: float, tok_s: float, mfu: float | None,
                mem_gib: float, eta_s: float) -> str:
    mfu_text = f"{mfu:.0%}" if mfu is not None else "n/a"
    mem_text = f"{mem_gib:.0f}" if mem_gib >= 10 else f"{mem_gib:.1f}"
    return (f"step {step}/{total} | loss {loss:.3f} | lr {lr:.1e} | {format_rate(tok_s)} tok/s | "
            f"mfu {mfu_text} | mem {mem_text} GiB | eta {format_eta(eta_s)}")


class MetricsLog:
    """Per-step records to OUT/metrics.jsonl; one summary line per `every` steps (rank 0 only)."""

    def __init__(self, out_dir: Path, *, start_step: int, total_steps: int, every: int, peak: float | None,
                 world: int, device: torch.device, enabled: bool, tensorboard: bool):
        self.total, self.every, self.peak, self.world, self.device = total_steps, every, peak, world, device
        self.enabled = enabled
        self.window: list[dict] = []
        self.start = time.perf_counter()
        self.steps_timed = 0
        self.file = _open_jsonl(Path(out_dir) / "metrics.jsonl", start_step) if enabled else None
        self.tb = _tensorboard(Path(out_dir) / "tb") if enabled and tensorboard else None

    def record(self, *, step: int, loss: float, lr: float, grad_norm: float, n_tokens: int, flops: float,
               step_s: float, data_wait_s: float) -> None:
        """`step` is 1-based (optimizer steps done); tokens and FLOPs are summed over all ranks."""
        mfu = flops / (step_s * self.world * self.peak) if self.peak else None
        rec = {"step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm, "tokens": n_tokens,
               "tok_per_s": n_tokens / step_s, "mfu": mfu, "step_s": step_s, "data_wait_s": data_wait_s,
               "mem_gib": memory_gib(self.device), "flops": flops}
        self.window.append(rec)
        self.steps_timed += 1
        if not self.enabled:
            return
        self.file.write(json.dumps(rec) + "\n")
        self.file.flush()
        if self.tb is not None:
            for key in ("loss", "lr", "grad_norm", "tok_per_s", "mfu", "mem_gib"):
                if rec[key] is not None:
                    self.tb.add_scalar(f"train/{key}", rec[key], step)
        if step % self.every == 0 or step == self.total:
            self._print_window(step)

    def _print_window(self, step: int) -> None:
        recs, self.window = self.window, []
        seconds = sum(r["step_s"] for r in recs)
        flops = sum(r["flops"] for r in recs)
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.steps_timed * (self.total - step)
        print(format_line(step=step, total=self.total, loss=sum(r["loss"] for r in recs) / len(recs),
                          lr=recs[-1]["lr"], tok_s=sum(r["tokens"] for r in recs) / seconds,
                          mfu=flops / (seconds * self.world * self.peak) if self.peak else None,
                          mem_gib=recs[-1]["mem_gib"], eta_s=eta), flush=True)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


def _open_jsonl(path: Path, start_step: int):
    """A fresh file for a fresh run; on resume, keep the records up to the checkpoint's step and
    drop those a crashed run wrote after it, so the file reads as one trajectory."""
    kept = []
    if start_step > 0 and path.is_file():
        kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= start_step]
    path.parent.mkdir(parents=True, exist_ok=True)
    file = open(path, "w")  # noqa: SIM115 - closed by MetricsLog.close
    file.writelines(line + "\n" for line in kept)
    return file


def _tensorboard(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("log.tensorboard: the tensorboard package is not installed; continuing without it "
              "(pip install tensorboard)", file=sys.stderr)
        return None
    return SummaryWriter(str(log_dir))
