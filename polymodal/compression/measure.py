"""What a compression step costs and gains: size on disk, parameters (and non-zeros), batch-1
latency percentiles and batch-64 throughput, for a PyTorch model or an ONNX Runtime one."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

Tensors = dict[str, torch.Tensor]
Runner = Callable[[Tensors, Tensors], Tensors]


def size_mb(*paths: str | Path) -> float:
    return round(sum(Path(p).stat().st_size for p in paths if Path(p).exists()) / 2**20, 3)


def count_params(model: nn.Module) -> tuple[int, int]:
    """(parameters, non-zero parameters), counting int8-packed weights of quantised layers."""
    total = nonzero = 0
    for t in list(model.parameters()) + _packed_weights(model):
        total += t.numel()
        nonzero += int(torch.count_nonzero(t.int_repr() if t.is_quantized else t))
    return total, nonzero


def _packed_weights(model: nn.Module) -> list[torch.Tensor]:
    """Weights that dynamic quantisation moved out of ``parameters()`` into packed int8 form."""
    from torch.ao.nn.quantized import dynamic as qd

    out: list[torch.Tensor] = []
    for m in model.modules():
        if isinstance(m, qd.Linear):
            out.append(m.weight())
        elif isinstance(m, qd.GRU):
            out += [w for w in m.get_weight().values() if isinstance(w, torch.Tensor)]
    return out


def rows(batch: tuple[Tensors, Tensors], idx: list[int]) -> tuple[Tensors, Tensors]:
    features, masks = batch
    return {k: v[idx] for k, v in features.items()}, {k: v[idx] for k, v in masks.items()}


def latency(
    run: Runner, singles: list[tuple[Tensors, Tensors]], repeats: int = 200, warmup: int = 10
) -> dict[str, float]:
    """p50 / p99 milliseconds of one-row calls, cycling through ``singles`` (rows preprocessed
    one at a time, as a server sees them: token sequences as long as that row's text)."""
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            one = singles[i % len(singles)]
            t0 = time.perf_counter()
            run(*one)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1000)
    return {
        "p50_ms": round(float(np.percentile(times, 50)), 3),
        "p99_ms": round(float(np.percentile(times, 99)), 3),
    }


def throughput(
    run: Runner, batch: tuple[Tensors, Tensors], size: int = 64, seconds: float = 3.0
) -> float:
    """Rows per second at ``size`` rows per call (rows repeated when the batch is smaller)."""
    n = len(next(iter(batch[1].values())))
    full = rows(batch, [i % n for i in range(size)])
    done, t0 = 0, time.perf_counter()
    with torch.inference_mode():
        run(*full)  # warm-up
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds or done == 0:
            run(*full)
            done += size
    return round(done / (time.perf_counter() - t0), 1)


def profile(
    run: Runner,
    batch: tuple[Tensors, Tensors],
    singles: list[tuple[Tensors, Tensors]],
    repeats: int = 200,
) -> dict[str, Any]:
    """Latency over ``repeats`` one-row calls; batch-64 throughput over ``repeats / 100`` s."""
    seconds = max(0.1, repeats / 100)
    return {
        **latency(run, singles, repeats),
        "batch64_rows_per_s": throughput(run, batch, 64, seconds),
    }
