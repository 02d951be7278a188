"""Pooling over a padded sequence axis that ignores padding and never divides by zero.

A row whose mask is all False (an empty text, a missing modality) pools to zeros rather than NaN,
so a missing input can flow through the model untouched by Python branches (ONNX-friendly).
"""

from __future__ import annotations

import torch
from torch import Tensor


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` (B, T, D) over the positions where ``mask`` (B, T) is True -> (B, D)."""
    keep = mask.unsqueeze(-1)  # (B, T, 1)
    total = torch.where(keep, x, torch.zeros_like(x)).sum(dim=1)  # (B, D)
    count = keep.sum(dim=1).clamp(min=1).to(x.dtype)  # (B, 1)
    return total / count


def masked_max(x: Tensor, mask: Tensor) -> Tensor:
    """Max of ``x`` (B, T, D) over the positions where ``mask`` (B, T) is True -> (B, D);
    all-False rows give zeros."""
    keep = mask.unsqueeze(-1)  # (B, T, 1)
    lowest = torch.finfo(x.dtype).min
    best = torch.where(keep, x, torch.full_like(x, lowest)).amax(dim=1)  # (B, D)
    any_kept = keep.any(dim=1)  # (B, 1)
    return torch.where(any_kept, best, torch.zeros_like(best))
