"""Cross-modal attention: a Transformer over one token per modality."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polymodal.fusion._common import Projections, mask_stack, sorted_names
from polymodal.registry import register


@register("fusion", "attention")
class AttentionFusion(nn.Module):
    """Each modality becomes a token (projection + a learned modality-type embedding); a learned
    [CLS] token, always present, attends to the present ones through a Transformer encoder and
    is the fused output. Missing modalities are key-padding-masked, and because [CLS] is never
    masked a row with every modality missing still gives a finite output."""

    def __init__(
        self,
        in_dims: dict[str, int],
        d_model: int = 64,
        heads: int = 4,
        layers: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.names = sorted_names(in_dims)
        self.proj = Projections(in_dims, d_model, activation="none")
        self.type_embedding = nn.Parameter(torch.randn(len(self.names), d_model) * 0.02)
        self.cls = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model,
            heads,
            dim_feedforward=2 * d_model,
            dropout=dropout,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.out_dim = d_model

    def forward(self, features: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor:
        z = self.proj(features)
        tokens = torch.stack([z[n] for n in self.names], dim=1) + self.type_embedding  # (B, M, D)
        present = mask_stack(mask, self.names)  # (B, M)
        tokens = tokens * present.unsqueeze(-1)
        cls = self.cls.expand(tokens.shape[0], -1, -1)  # (B, 1, D)
        seq = torch.cat([cls, tokens], dim=1)  # (B, 1+M, D)
        padding = torch.cat(
            [torch.zeros_like(present[:, :1]), 1.0 - present], dim=1
        ).bool()  # True = ignore
        out = self.encoder(seq, src_key_padding_mask=padding)
        return self.norm(out[:, 0])  # (B, D)
