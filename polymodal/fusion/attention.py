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

    def _sequence(
        self, features: dict[str, Tensor], mask: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """[CLS] + one token per modality (B, 1+M, D) and the key padding mask (True = ignore)."""
        z = self.proj(features)
        tokens = torch.stack([z[n] for n in self.names], dim=1) + self.type_embedding  # (B, M, D)
        present = mask_stack(mask, self.names)  # (B, M)
        tokens = tokens * present.unsqueeze(-1)
        cls = self.cls.expand(tokens.shape[0], -1, -1)  # (B, 1, D)
        seq = torch.cat([cls, tokens], dim=1)  # (B, 1+M, D)
        padding = torch.cat(
            [torch.zeros_like(present[:, :1]), 1.0 - present], dim=1
        ).bool()  # True = ignore
        return seq, padding

    def forward(self, features: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor:
        seq, padding = self._sequence(features, mask)
        out = self.encoder(seq, src_key_padding_mask=padding)
        return self.norm(out[:, 0])  # (B, D)

    @torch.no_grad()
    def attention_maps(self, features: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor:
        """Per-sample attention weights, (B, layers, heads, 1+M, 1+M): query -> key, token 0 is
        [CLS], then the modalities in sorted order (``names``); missing ones get weight 0.
        Each layer's weights are recomputed from the input that layer really sees."""
        seq, padding = self._sequence(features, mask)
        maps = []
        for layer in self.encoder.layers:
            h = layer.norm1(seq)  # norm_first: attention reads the normalised tokens
            _, weights = layer.self_attn(
                h, h, h, key_padding_mask=padding, need_weights=True, average_attn_weights=False
            )
            maps.append(weights)  # (B, heads, 1+M, 1+M)
            seq = layer(seq, src_key_padding_mask=padding)
        return torch.stack(maps, dim=1)
