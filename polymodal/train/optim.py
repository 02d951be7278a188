"""Optimizer construction and modality dropout: pure helpers used by the loop."""

from __future__ import annotations

import torch
from torch import nn

from polymodal.config import TrainerConfig


def make_optimizer(model: nn.Module, cfg: TrainerConfig) -> torch.optim.Optimizer:
    """Weight decay on matrices only; biases, norms and embeddings' 1-d params are not decayed."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9)


def modality_dropout(
    masks: dict[str, torch.Tensor], p: float, generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """Drop each present modality of each row with probability ``p``, but always keep one of the
    row's present modalities, so the model learns to cope with any subset."""
    if p <= 0 or len(masks) < 2:
        return masks
    names = sorted(masks)
    present = torch.stack([masks[k].bool() for k in names], dim=1)  # (B, M)
    device = present.device
    drop = torch.rand(present.shape, generator=generator).to(device) < p
    kept = present & ~drop
    # rows that lost everything get back one randomly chosen present modality
    scores = torch.rand(present.shape, generator=generator).to(device) * present.float()
    rescue = torch.zeros_like(present)
    rescue[torch.arange(present.shape[0], device=device), scores.argmax(1)] = True
    none_left = ~kept.any(1, keepdim=True)
    kept = kept | (rescue & present & none_left)
    return {k: kept[:, i] for i, k in enumerate(names)}
