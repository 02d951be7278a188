"""Early (feature-level) fusion by concatenation."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polymodal.fusion._common import sorted_names, zero_missing
from polymodal.registry import register


@register("fusion", "concat")
class ConcatFusion(nn.Module):
    """Concatenate the modalities' features (missing ones zeroed); with ``append_mask`` the
    presence bits are appended, so the layers after can tell "missing" from "zero"."""

    def __init__(
        self,
        in_dims: dict[str, int],
        append_mask: bool = True,
        out_dim: int | None = None,  # None: the raw concatenation; else Linear+GELU to out_dim
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.names = sorted_names(in_dims)
        self.append_mask = append_mask
        width = sum(in_dims[n] for n in self.names) + (len(self.names) if append_mask else 0)
        self.proj: nn.Module = nn.Identity()
        if out_dim is not None:
            self.proj = nn.Sequential(nn.Linear(width, out_dim), nn.GELU(), nn.Dropout(dropout))
        self.out_dim = out_dim if out_dim is not None else width

    def forward(self, features: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor:
        parts = [zero_missing(features[n], mask[n]) for n in self.names]
        if self.append_mask:
            parts += [mask[n].to(parts[0].dtype).unsqueeze(-1) for n in self.names]
        return self.proj(torch.cat(parts, dim=-1))  # (B, out_dim)
