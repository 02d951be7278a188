"""A pre-norm Transformer encoder layer written with static-size reshapes only (heads split with
``unflatten``), so the TorchScript tracer exports it with dynamic batch and sequence axes;
``nn.MultiheadAttention``'s traced reshapes freeze both (only ``torch.export`` handles it)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class TransformerLayer(nn.Module):
    """``x + attention(norm(x))`` then ``x + ffn(norm(x))`` over (B, N, D); ``keep`` (B, N) marks
    the keys that may be attended (each row needs at least one)."""

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.heads, self.head_dim = heads, dim // heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ff_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dim, dim)
        )
        self.dropout = nn.Dropout(dropout)

    def attend(self, x: Tensor, keep: Tensor) -> Tensor:
        q, k, v = self.qkv(x).unflatten(-1, (3, self.heads, self.head_dim)).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, N, d)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)  # (B, H, N, N)
        scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
        weights = self.dropout(torch.softmax(scores, dim=-1))
        return self.out((weights @ v).transpose(1, 2).flatten(2))  # (B, N, D)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        x = x + self.dropout(self.attend(self.norm1(x), keep))
        return x + self.dropout(self.ffn(self.norm2(x)))


__all__ = ["TransformerLayer"]
