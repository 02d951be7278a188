"""Weighted fusion: a learned weight per modality, or input-dependent gates per modality."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polymodal.fusion._common import Projections, mask_stack, sorted_names
from polymodal.registry import register


@register("fusion", "weighted_sum")
class WeightedSumFusion(nn.Module):
    """h = sum_m alpha_m e_m with alpha = softmax of learned logits over the *present*
    modalities: for two modalities this is h = a e_x + (1 - a) e_y."""

    def __init__(self, in_dims: dict[str, int], dim: int = 128) -> None:
        super().__init__()
        self.names = sorted_names(in_dims)
        self.proj = Projections(in_dims, dim)
        self.logits = nn.Parameter(torch.zeros(len(self.names)))
        self.out_dim = dim

    def forward(self, features: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor:
        z = self.proj(features)
        e = torch.stack([z[n] for n in self.names], dim=1)  # (B, M, D)
        present = mask_stack(mask, self.names)  # (B, M)
        w = torch.exp(self.logits - self.logits.max()) * present  # softmax over present only
        alpha = w / w.sum(1, keepdim=True).clamp(min=1e-12)  # all missing -> zeros
        return (alpha.unsqueeze(-1) * e).sum(1)  # (B, D)


@register("fusion", "gated")
class GatedFusion(nn.Module):
    """Gated Multimodal Unit (Arevalo et al. 2017): h = sum_m g_m * tanh(W_m x_m), where the gates
    g = sigmoid(W_g [x_1; ...; x_M]) depend on the input; missing modalities are gated out."""

    def __init__(self, in_dims: dict[str, int], dim: int = 128) -> None:
        super().__init__()
        self.names = sorted_names(in_dims)
        self.proj = Projections(in_dims, dim, activation="tanh")
        self.gate = nn.Linear(
            sum(in_dims[n] for n in self.names) + len(self.names), len(self.names) * dim
        )
        self.dim = self.out_dim = dim

    def forward(self, features: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor:
        present = mask_stack(mask, self.names)  # (B, M)
        raw = [features[n] * present[:, i : i + 1] for i, n in enumerate(self.names)]
        gates = torch.sigmoid(self.gate(torch.cat([*raw, present], dim=-1)))  # (B, M*D)
        gates = gates.view(-1, len(self.names), self.dim) * present.unsqueeze(-1)  # (B, M, D)
        z = self.proj(features)
        h = torch.stack([z[n] for n in self.names], dim=1)  # (B, M, D)
        return (gates * h).sum(1)  # (B, D)
