"""Time-series encoders trained from scratch on (B, T, C + 1) tensors: C standardised channels and
a last channel that is the step mask (1: a real step; 0: padding or a gap), see
:mod:`polymodal.data.preprocess.series`. The mask also goes in as an input channel, so the
networks see where the gaps are.

Every encoder pools over real steps only, so a missing series (no real step) gives a finite
vector (zeros) and, in eval mode, a series gives the same output however much padding follows it
in its batch; nothing branches on data in Python (ONNX export with a dynamic time axis).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.encoders.base import Encoder
from polymodal.layers import TransformerLayer, masked_max, masked_mean, norm_layer
from polymodal.registry import register

POOLS = ("mean", "max", "attention")


class SeriesEncoder(Encoder):
    modalities: ClassVar[tuple[str, ...]] = ("timeseries",)


def step_mask(x: Tensor) -> Tensor:
    """(B, T, C + 1) -> (B, T) True on real steps."""
    return x[..., -1] > 0.5


class AttentionPool(nn.Module):
    """A learned score per step, softmax over the real steps, weighted sum: (B, T, D) -> (B, D).
    A row without real steps pools to zeros."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        score = self.score(h).squeeze(-1).masked_fill(~mask, -1e4)  # (B, T); finite: no NaN
        weights = torch.softmax(score, dim=1) * mask.to(h.dtype)  # all-masked rows: zeros
        return torch.einsum("bt,btd->bd", weights, h)


def pool_steps(kind: str, pool: nn.Module | None, h: Tensor, mask: Tensor) -> Tensor:
    """(B, T, D) over the real steps of ``mask`` (B, T) -> (B, D)."""
    if kind == "max":
        return masked_max(h, mask)
    if kind == "attention" and pool is not None:
        return pool(h, mask)  # type: ignore[no-any-return]
    return masked_mean(h, mask)


class ResidualBlock1d(nn.Module):
    """Wang et al. (2017)'s ResNet block for time series: convolutions of decreasing width
    ("same" padding), each normalised and ReLU'd, plus a shortcut (1x1 conv when the width
    changes). Steps outside the mask are zeroed after every layer, so padding never leaks in."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_sizes: Sequence[int], norm: str
    ) -> None:
        super().__init__()
        widths = [in_channels] + [out_channels] * len(kernel_sizes)
        self.convs = nn.ModuleList(
            nn.Conv1d(a, b, k, padding=k // 2, bias=norm == "none")
            for (a, b), k in zip(itertools.pairwise(widths), kernel_sizes, strict=True)
        )
        self.norms = nn.ModuleList(norm_layer(norm, out_channels, 1) for _ in kernel_sizes)
        self.shortcut: nn.Module = nn.Identity()
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv1d(in_channels, out_channels, 1, bias=False),
                norm_layer(norm, out_channels, 1),
            )

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        h = x  # (B, C_in, T); keep: (B, 1, T)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            h = norm(conv(h))
            h = (torch.relu(h) if i < len(self.convs) - 1 else h) * keep
        return torch.relu(h + self.shortcut(x)) * keep  # (B, C_out, T)


@register("encoder", "series_cnn")
class SeriesCNN(SeriesEncoder):
    """A residual 1-D CNN (the ResNet baseline of Wang et al. 2017 / Ismail Fawaz et al. 2019,
    by default narrower for CPUs), pooled over real steps: mean, max or learned attention.
    Odd kernel sizes keep one output per step."""

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int] = (32, 64, 64),  # one residual block per width
        kernel_sizes: Sequence[int] = (7, 5, 3),  # convolutions of each block
        norm: str = "batch",
        pool: str = "mean",  # mean | max | attention
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"series_cnn: pool must be one of {', '.join(POOLS)}, got {pool!r}")
        if any(k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"series_cnn: kernel_sizes must be odd, got {list(kernel_sizes)}")
        widths = [in_channels + 1, *channels]  # + the mask channel
        self.blocks = nn.ModuleList(
            ResidualBlock1d(a, b, kernel_sizes, norm) for a, b in itertools.pairwise(widths)
        )
        self.pool = pool
        self.attention = AttentionPool(widths[-1]) if pool == "attention" else None
        self.dropout = nn.Dropout(dropout)
        self.out_dim = widths[-1]

    def forward(self, x: Tensor) -> Tensor:
        mask = step_mask(x)  # (B, T)
        keep = mask.to(x.dtype)[:, None, :]  # (B, 1, T)
        h = x.transpose(1, 2) * keep  # (B, C + 1, T)
        for block in self.blocks:
            h = block(h, keep)
        pooled = pool_steps(self.pool, self.attention, h.transpose(1, 2), mask)  # (B, D)
        return self.dropout(pooled)


@register("encoder", "series_gru")
class SeriesGRU(SeriesEncoder):
    """A (bi)directional GRU or LSTM over the steps, mean-pooled over real steps.

    No ``pack_padded_sequence`` (it does not export to ONNX): padded steps are zeros with mask 0,
    and their outputs are left out of the pool; the backward direction does read trailing
    padding first, so outputs depend slightly on the padding (as the text BiGRU's)."""

    def __init__(
        self,
        in_channels: int,
        hidden: int = 64,
        num_layers: int = 1,
        cell: str = "gru",  # gru | lstm
        bidirectional: bool = True,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"series_gru: cell must be 'gru' or 'lstm', got {cell!r}")
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(
            in_channels + 1,
            hidden,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.out_dim = hidden * (2 if bidirectional else 1)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)  # (B, T, H * directions)
        return self.dropout(masked_mean(out, step_mask(x)))  # (B, out_dim)


@register("encoder", "patchtst")
class PatchTST(SeriesEncoder):
    """A small Transformer over patches of the series (PatchTST, Nie et al. 2023): every
    ``patch`` steps of all channels become one token (a strided convolution), sinusoidal
    positions are added, and pre-norm Transformer layers attend over the patches that hold a
    real step; the outputs are mean-pooled over them. A trailing partial patch is zero-padded.
    The layers split heads with static reshapes, so the tracer exports any batch and length."""

    def __init__(
        self,
        in_channels: int,
        patch: int = 16,
        dim: int = 64,
        layers: int = 2,
        heads: int = 4,
        ff_dim: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.patch = patch
        self.embed = nn.Conv1d(in_channels + 1, dim, patch, stride=patch)
        # sinusoidal positions computed for the patches at hand: any length, nothing to learn
        freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(1e4) / dim))
        self.freq: Tensor
        self.register_buffer("freq", freq, persistent=False)
        self.layers = nn.ModuleList(
            TransformerLayer(dim, heads, ff_dim, dropout) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim

    def forward(self, x: Tensor) -> Tensor:
        keep = step_mask(x).to(x.dtype)[:, None, :]  # (B, 1, T)
        h = F.pad((x * keep.transpose(1, 2)).transpose(1, 2), (0, self.patch - 1))
        h = self.embed(h).transpose(1, 2)  # (B, N, D), N = ceil(T / patch)
        real = F.max_pool1d(F.pad(keep, (0, self.patch - 1)), self.patch, self.patch)[:, 0] > 0
        empty = ~real.any(dim=1, keepdim=True)  # (B, 1) rows without a real step
        first = torch.zeros_like(real)
        first[:, 0] = True
        attend = real | (empty & first)  # attention needs one key per row
        h = h + self.positions(h)
        for layer in self.layers:
            h = layer(h, attend)  # (B, N, D)
        return masked_mean(self.norm(h), real)  # (B, D)

    def positions(self, h: Tensor) -> Tensor:
        """(B, N, D) -> the (N, D) sin / cos table of "Attention Is All You Need" (interleaved)."""
        ones = torch.ones_like(h[0, :, :1])  # (N, 1): positions from the shape, export-friendly
        angles = (torch.cumsum(ones, dim=0) - 1) * self.freq  # (N, D / 2)
        table = torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1)  # (N, D / 2, 2)
        return table.flatten(1)[:, : h.shape[-1]]


__all__ = ["PatchTST", "SeriesCNN", "SeriesEncoder", "SeriesGRU", "step_mask"]
