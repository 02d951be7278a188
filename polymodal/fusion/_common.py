"""Helpers shared by fusion methods: sorted names, mask handling, per-modality projections."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def sorted_names(in_dims: dict[str, int]) -> list[str]:
    if not in_dims:
        raise ValueError("fusion needs at least one modality (in_dims is empty)")
    return sorted(in_dims)


def mask_stack(mask: dict[str, Tensor], names: list[str]) -> Tensor:
    """(B, M) float presence matrix in ``names`` order."""
    return torch.stack([mask[n].to(torch.float32) for n in names], dim=1)


def zero_missing(x: Tensor, present: Tensor) -> Tensor:
    """Zero the rows of ``x`` (B, D) whose modality is missing (``present`` (B,) bool/float)."""
    return x * present.to(x.dtype).unsqueeze(-1)


class Projections(nn.Module):
    """One ``Linear -> activation`` per modality to a shared width ``dim``."""

    def __init__(self, in_dims: dict[str, int], dim: int, activation: str = "gelu") -> None:
        super().__init__()
        act: type[nn.Module] = {
            "gelu": nn.GELU,
            "tanh": nn.Tanh,
            "relu": nn.ReLU,
            "none": nn.Identity,
        }[activation]
        self.proj = nn.ModuleDict(
            {n: nn.Sequential(nn.Linear(d, dim), act()) for n, d in sorted(in_dims.items())}
        )

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        return {n: p(features[n]) for n, p in self.proj.items()}
