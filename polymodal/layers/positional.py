"""Positional embeddings added to a (B, T, D) sequence: fixed sinusoids or a learned table."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class SinusoidalPositionalEmbedding(nn.Module):
    """The fixed sin/cos table of "Attention Is All You Need"; nothing to learn or to save
    (the table is a non-persistent buffer, rebuilt from ``dim`` and ``max_len``)."""

    def __init__(self, dim: int, max_len: int = 512) -> None:
        super().__init__()
        position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)  # (T, 1)
        freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
        table = torch.zeros(max_len, dim)
        table[:, 0::2] = torch.sin(position * freq)
        table[:, 1::2] = torch.cos(position * freq[: dim // 2])
        self.table: Tensor
        self.register_buffer("table", table, persistent=False)
        self.max_len = max_len

    def forward(self, x: Tensor) -> Tensor:
        return x + self.table[: x.shape[1]].to(x.dtype)  # (B, T, D)


class LearnedPositionalEmbedding(nn.Module):
    """One trainable vector per position, as in BERT; sequences longer than ``max_len`` must be
    truncated by the caller."""

    def __init__(self, max_len: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(max_len, dim)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.max_len = max_len

    def forward(self, x: Tensor) -> Tensor:
        positions = torch.arange(x.shape[1], device=x.device)  # (T,)
        return x + self.embedding(positions).unsqueeze(0)  # (B, T, D)
