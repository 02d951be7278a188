"""Elementwise (Hadamard) product fusion: multiplicative interactions at low cost."""

from __future__ import annotations

from torch import Tensor, nn

from polymodal.fusion._common import Projections, sorted_names
from polymodal.registry import register


@register("fusion", "product")
class ProductFusion(nn.Module):
    """Project each modality to ``dim`` then multiply elementwise; a missing modality contributes
    ones (the neutral element), so the product is over the present ones."""

    def __init__(self, in_dims: dict[str, int], dim: int = 128) -> None:
        super().__init__()
        self.names = sorted_names(in_dims)
        # 1 + tanh keeps factors in (0, 2) around 1: products of many modalities stay well scaled
        self.proj = Projections(in_dims, dim, activation="tanh")
        self.out_dim = dim

    def forward(self, features: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor:
        z = self.proj(features)
        out: Tensor | None = None
        for n in self.names:
            keep = mask[n].to(z[n].dtype).unsqueeze(-1)  # (B, 1)
            factor = 1.0 + z[n] * keep  # missing -> exactly 1
            out = factor if out is None else out * factor
        assert out is not None
        return out - 1.0  # (B, D); all missing -> 0
