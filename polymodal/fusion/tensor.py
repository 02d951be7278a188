"""Tensor Fusion Network and its low-rank factorisation."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from polymodal.fusion._common import Projections, sorted_names, zero_missing
from polymodal.registry import register


def _with_one(x: Tensor) -> Tensor:
    """[x; 1]: the appended 1 keeps every lower-order (unimodal, bimodal...) term in the product."""
    return torch.cat([x, torch.ones_like(x[:, :1])], dim=-1)


@register("fusion", "tensor")
class TensorFusion(nn.Module):
    """Tensor Fusion Network (Zadeh et al. 2017): the outer product of the modalities' [z_m; 1]
    vectors, flattened. A missing modality becomes [0; 1], leaving only the other terms."""

    def __init__(self, in_dims: dict[str, int], dim: int = 8, max_dim: int = 65536) -> None:
        super().__init__()
        self.names = sorted_names(in_dims)
        self.out_dim = (dim + 1) ** len(self.names)
        if self.out_dim > max_dim:
            raise ValueError(
                f"tensor fusion of {len(self.names)} modalities at dim={dim} has {self.out_dim} features "
                f"(> max_dim={max_dim}); lower dim, raise max_dim, or use low_rank"
            )
        self.proj = Projections(in_dims, dim)

    def forward(self, features: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor:
        z = self.proj(features)
        out = _with_one(zero_missing(z[self.names[0]], mask[self.names[0]]))  # (B, d+1)
        for n in self.names[1:]:
            v = _with_one(zero_missing(z[n], mask[n]))  # (B, d+1)
            out = torch.einsum("bi,bj->bij", out, v).flatten(1)  # (B, prod)
        return out


@register("fusion", "low_rank")
class LowRankFusion(nn.Module):
    """Low-rank Multimodal Fusion (Liu et al. 2018): the TFN weight tensor as a sum of ``rank``
    outer products of per-modality factors, so the cost is linear in the number of modalities."""

    def __init__(self, in_dims: dict[str, int], rank: int = 4, out_dim: int = 64) -> None:
        super().__init__()
        self.names = sorted_names(in_dims)
        self.rank, self.out_dim = rank, out_dim
        self.factors = nn.ParameterDict(
            {
                n: nn.Parameter(
                    torch.randn(rank, in_dims[n] + 1, out_dim) / math.sqrt(in_dims[n] + 1)
                )
                for n in self.names
            }
        )
        self.rank_weights = nn.Parameter(torch.full((1, rank), 1.0 / rank))
        self.bias = nn.Parameter(torch.zeros(1, out_dim))

    def forward(self, features: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor:
        fused: Tensor | None = None
        for n in self.names:
            x = _with_one(zero_missing(features[n], mask[n]))  # (B, d+1); missing -> [0; 1]
            f = torch.einsum("bi,rio->rbo", x, self.factors[n])  # (R, B, O)
            fused = f if fused is None else fused * f
        assert fused is not None
        out = torch.einsum("qr,rbo->bo", self.rank_weights, fused)  # (B, O)
        return out + self.bias
