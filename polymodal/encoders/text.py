"""Text encoders trained from scratch on token ids (B, L), padded with ``pad_id``.

All pool with the padding masked out, so an empty or missing text (an all-pad row) gives a finite
vector (zeros after pooling) instead of NaN, with no Python branch on data values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from polymodal.encoders.base import Encoder
from polymodal.layers import LearnedPositionalEmbedding, masked_max, masked_mean
from polymodal.registry import register


class TextEncoder(Encoder):
    """Shared parts: a token embedding whose pad row stays zero, and the non-pad mask."""

    modalities: ClassVar[tuple[str, ...]] = ("text",)

    def __init__(self, vocab_size: int, pad_id: int, embed_dim: int) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)

    def mask(self, x: Tensor) -> Tensor:
        return x != self.pad_id  # (B, L) True on real tokens


@register("encoder", "bow")
class BagOfEmbeddings(TextEncoder):
    """Mean of the token embeddings: fast, order-blind, a strong baseline on short texts."""

    def __init__(self, vocab_size: int, pad_id: int = 0, embed_dim: int = 128) -> None:
        super().__init__(vocab_size, pad_id, embed_dim)
        self.out_dim = embed_dim

    def forward(self, x: Tensor) -> Tensor:
        return masked_mean(self.embedding(x), self.mask(x))  # (B, L) -> (B, D)


@register("encoder", "fasttext")
class FastText(TextEncoder):
    """fastText-style bag of hashed word n-grams: the ``ngram_hash`` tokenizer maps each n-gram to
    one of ``buckets`` ids (plus pad and unknown), so the table never needs a vocabulary."""

    def __init__(
        self,
        vocab_size: int | None = None,
        pad_id: int = 0,
        embed_dim: int = 64,
        buckets: int = 2**18,
    ) -> None:
        # the preprocessor's own bucket count wins if a user overrode it in ``preprocessing``
        size = max(buckets + 2, vocab_size or 0)
        super().__init__(size, pad_id, embed_dim)
        self.out_dim = embed_dim

    @classmethod
    def input_spec(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {"tokenizer": "ngram_hash", "buckets": int(kwargs.get("buckets", 2**18))}

    def forward(self, x: Tensor) -> Tensor:
        return masked_mean(self.embedding(x), self.mask(x))  # (B, L) -> (B, D)


@register("encoder", "text_cnn")
class TextCNN(TextEncoder):
    """Kim (2014): parallel 1D convolutions of several widths, max-pooled over time; good at
    picking up key phrases wherever they occur."""

    def __init__(
        self,
        vocab_size: int,
        pad_id: int = 0,
        embed_dim: int = 128,
        kernel_sizes: Sequence[int] = (2, 3, 4),
        channels: int = 64,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(vocab_size, pad_id, embed_dim)
        # zero "same" padding (like the pad embeddings) keeps one output per token, so the token
        # mask also masks the outputs and texts shorter than the widest kernel still work
        self.convs = nn.ModuleList(
            nn.Sequential(
                nn.ConstantPad1d(((k - 1) // 2, k // 2), 0.0), nn.Conv1d(embed_dim, channels, k)
            )
            for k in kernel_sizes
        )
        self.dropout = nn.Dropout(dropout)
        self.out_dim = channels * len(self.convs)

    def forward(self, x: Tensor) -> Tensor:
        mask = self.mask(x)  # (B, L)
        emb = self.embedding(x).transpose(1, 2)  # (B, E, L)
        pooled = [
            masked_max(torch.relu(conv(emb)).transpose(1, 2), mask)  # (B, C)
            for conv in self.convs
        ]
        return self.dropout(torch.cat(pooled, dim=1))  # (B, C * len(kernel_sizes))


@register("encoder", "bigru")
class BiGRU(TextEncoder):
    """Bidirectional GRU over the padded sequence, mean-pooled over real tokens.

    No ``pack_padded_sequence``: it does not export to ONNX. Outputs at pad positions are masked
    out of the pool instead (the backward direction does read the trailing pads first, a small
    cost for a model that exports).
    """

    def __init__(
        self,
        vocab_size: int,
        pad_id: int = 0,
        embed_dim: int = 128,
        hidden: int = 64,
        num_layers: int = 1,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(vocab_size, pad_id, embed_dim)
        self.gru = nn.GRU(
            embed_dim,
            hidden,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.out_dim = 2 * hidden

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.gru(self.embedding(x))  # (B, L, 2H)
        return self.dropout(masked_mean(out, self.mask(x)))  # (B, 2H)


@register("encoder", "transformer")
class TextTransformer(TextEncoder):
    """A small pre-norm Transformer encoder with learned positions, mean-pooled over real tokens.

    Texts longer than ``max_len`` are truncated. Attention needs at least one key per row, so an
    all-pad row lets its first position attend (its output is masked out of the pool anyway).
    """

    def __init__(
        self,
        vocab_size: int,
        pad_id: int = 0,
        dim: int = 128,
        layers: int = 2,
        heads: int = 4,
        ff_dim: int = 256,
        dropout: float = 0.1,
        max_len: int = 512,
    ) -> None:
        super().__init__(vocab_size, pad_id, dim)
        self.max_len = max_len
        self.positions = LearnedPositionalEmbedding(max_len, dim)
        layer = nn.TransformerEncoderLayer(
            dim, heads, ff_dim, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        # nested tensors would make eval outputs differ in layout from train; keep one code path
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, : self.max_len]  # (B, L)
        mask = self.mask(x)  # (B, L)
        empty = ~mask.any(dim=1, keepdim=True)  # (B, 1) all-pad rows
        first = torch.zeros_like(mask)
        first[:, 0] = True
        attend = mask | (empty & first)  # (B, L) keys that may be attended
        h = self.positions(self.embedding(x))  # (B, L, D)
        h = self.encoder(h, src_key_padding_mask=~attend)  # (B, L, D)
        return masked_mean(self.norm(h), mask)  # (B, D)
