"""Learning-rate schedule as a pure function of the step (nanoGPT-style): trivially resumable."""

from __future__ import annotations

import math


def lr_at(step: int, total_steps: int, base_lr: float, warmup_steps: int, schedule: str) -> float:
    """Linear warmup for ``warmup_steps``, then cosine / linear decay to 0, or constant."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / span))
    if schedule == "linear":
        return base_lr * (1.0 - progress)
    if schedule == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule!r}; valid choices: constant, cosine, linear")
