"""Several processes (``torchrun`` / ``accelerate launch``): who am I, and gathering results.

Plain ``torch.distributed`` calls that degrade to no-ops in a single process. Gathered payloads
are tensors or JSON (never pickle). On NCCL the tensors travel through the GPU.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
import torch.distributed as dist


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 alone); before the process group starts, from ``RANK``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def _device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def mean(value: float) -> float:
    """``value`` averaged over the ranks (itself alone)."""
    if not active():
        return value
    total = torch.tensor([value], dtype=torch.float64, device=_device())
    dist.all_reduce(total)
    return float(total.item()) / dist.get_world_size()


def _gather_padded(x: torch.Tensor) -> tuple[list[torch.Tensor], list[int]]:
    """Each rank's ``x`` (padded along dim 0 to the longest) and its row count, in rank order."""
    dev = _device()
    local = x.to(dev)
    sizes = [torch.zeros(1, dtype=torch.long, device=dev) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([local.shape[0]], device=dev))
    counts = [int(s.item()) for s in sizes]
    padded = torch.zeros((max(counts), *local.shape[1:]), dtype=local.dtype, device=dev)
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    return [p[:n].to(x.device) for p, n in zip(parts, counts, strict=True)], counts


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Every rank's ``x`` concatenated along dim 0 in rank order (row counts may differ), on
    every rank."""
    if not active():
        return x
    as_bool = x.dtype == torch.bool
    parts, _ = _gather_padded(x.to(torch.uint8) if as_bool else x)
    out = torch.cat(parts)
    return out.bool() if as_bool else out


def gather_json(obj: Any) -> list[Any]:
    """Every rank's JSON-serialisable ``obj``, in rank order, on every rank."""
    if not active():
        return [obj]
    data = json.dumps(obj).encode("utf-8")
    parts, _ = _gather_padded(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    return [json.loads(p.cpu().numpy().tobytes()) for p in parts]


def check_same(value: Any, what: str) -> None:
    """Fail on every rank, naming the ranks, when ranks disagree about ``value`` (a JSON value)."""
    values = gather_json(value)
    if any(v != values[0] for v in values):
        seen = ", ".join(f"rank {r}: {v}" for r, v in enumerate(values))
        raise RuntimeError(f"processes disagree about {what} ({seen})")


__all__ = [
    "active",
    "barrier",
    "check_same",
    "gather_json",
    "gather_rows",
    "is_main_process",
    "mean",
    "rank",
    "world_size",
]
