"""Encoders for tabular columns: standardised numbers (B, F) and category indices (B, K)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from polymodal.encoders.base import Encoder
from polymodal.layers import MLP
from polymodal.registry import register


@register("encoder", "mlp")
class NumericMLP(Encoder):
    """An MLP over the standardised numeric columns (missing values arrive as 0, the mean)."""

    modalities: ClassVar[tuple[str, ...]] = ("numeric",)

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (64,),
        out_dim: int = 64,
        dropout: float = 0.1,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.mlp = MLP(in_features, hidden, out_dim, dropout=dropout, activation=activation)
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x.float())  # (B, F) -> (B, out_dim)


@register("encoder", "embedding")
class CategoricalEmbedding(Encoder):
    """One embedding table per categorical column (index 0 = missing, a fixed zero vector;
    1 = unknown, learned), concatenated and mixed by an MLP.

    Default width per column is ``min(50, (cardinality + 1) // 2)``, the fast.ai rule of thumb.
    """

    modalities: ClassVar[tuple[str, ...]] = ("categorical",)

    def __init__(
        self,
        cardinalities: Sequence[int],
        embed_dim: int | None = None,  # one width for every column; None: the rule of thumb
        hidden: Sequence[int] = (64,),
        out_dim: int = 32,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        dims = [embed_dim or min(50, (card + 1) // 2) for card in cardinalities]
        self.tables = nn.ModuleList(
            nn.Embedding(card, dim, padding_idx=0)
            for card, dim in zip(cardinalities, dims, strict=True)
        )
        self.mlp = MLP(sum(dims), hidden, out_dim, dropout=dropout)
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        cols = [table(x[:, k]) for k, table in enumerate(self.tables)]  # K x (B, d_k)
        return self.mlp(torch.cat(cols, dim=1))  # (B, out_dim)
