"""Optimizer construction and modality dropout: pure helpers used by the loop."""

from __future__ import annotations

import torch
from torch import nn

from polymodal.config import TrainerConfig


def pretrained_params(model: nn.Module) -> set[int]:
    """ids of trainable parameters inside pretrained encoders (``module.pretrained`` is True)."""
    ids: set[int] = set()
    for module in model.modules():
        if getattr(module, "pretrained", False):
            ids |= {id(p) for p in module.parameters() if p.requires_grad}
    return ids


def make_optimizer(model: nn.Module, cfg: TrainerConfig) -> torch.optim.Optimizer:
    """Weight decay on matrices only; biases, norms and embeddings' 1-d params are not decayed.
    Each group's ``lr_scale`` multiplies the scheduled rate: pretrained weights being fine-tuned
    get ``cfg.pretrained_lr / cfg.lr`` (small steps keep what they learned), the rest 1."""
    params = [p for p in model.parameters() if p.requires_grad]
    pre = pretrained_params(model) if cfg.pretrained_lr is not None else set()
    scale = (cfg.pretrained_lr or cfg.lr) / cfg.lr
    groups = []
    for is_pre in (False, True):
        mine = [p for p in params if (id(p) in pre) == is_pre]
        for decay in (True, False):
            chosen = [p for p in mine if (p.dim() >= 2) == decay]
            if chosen:
                groups.append(
                    {
                        "params": chosen,
                        "weight_decay": cfg.weight_decay if decay else 0.0,
                        "lr_scale": scale if is_pre else 1.0,
                    }
                )
    if cfg.optimizer in ("adamw", "adam"):
        kind = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        return kind(groups, lr=cfg.lr, fused=_can_fuse(params))
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9)


def _can_fuse(params: list[nn.Parameter]) -> bool:
    """The fused Adam kernel updates every tensor in one pass: ~3x faster steps on CPU for large
    embedding tables (a 2^18-bucket fastText table: 80 -> 25 ms). It needs float tensors on one
    CPU/CUDA device type."""
    kinds = {p.device.type for p in params}
    return (
        bool(params)
        and len(kinds) == 1
        and kinds <= {"cpu", "cuda"}
        and all(p.is_floating_point() for p in params)
    )


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
