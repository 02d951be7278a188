"""Contrastive retrieval head (CLIP-style): two towers project two inputs' features into one
L2-normalised space, trained with a symmetric InfoNCE loss and a learnable temperature.

With ``anchors: k`` (both encoders frozen) the embedding also holds each side's anchor vector,
its similarity to the training pairs (:mod:`polymodal.heads.anchors`), weighted by
``anchor_weight``: the score of two items is then ``(cos_towers + w * cos_anchors) / (1 + w)``.
The towers train as without it (the loss reads their part only); the anchor part is added in
evaluation and prediction, where it carries what the frozen encoders know of unseen items.

Unlike the other heads it reads the two inputs' own encoder features, not the fused vector (its
``reads`` names them), so any registered encoder, frozen or not, can be either side. Its output
"logits" are the two embeddings, ``(B, 2, dim)``; a side whose modality is missing is all zeros
(a normalised vector never is), which is how the loss and the metrics leave such rows out.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.heads.anchors import AnchorSpace
from polymodal.registry import register

MAX_SCALE = 100.0  # CLIP's clamp on the logit scale (temperature >= 0.01)


def tower(in_dim: int, dim: int, hidden: int, dropout: float) -> nn.Module:
    """Linear projection, or a one-hidden-layer MLP (LayerNorm, GELU) when ``hidden`` > 0."""
    if not hidden:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, dim))
    return nn.Sequential(
        nn.LayerNorm(in_dim),
        nn.Linear(in_dim, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, dim),
    )


@register("head", "retrieval")
class RetrievalHead(nn.Module):
    """``pair = [a, b]``: rows are (a, b) matches; ``target`` (B, 2) holds group ids, and rows that
    share a cell on either side count as positives of each other (multi-positive InfoNCE)."""

    task: ClassVar[str] = "retrieval"

    def __init__(
        self,
        in_dims: dict[str, int],
        pair: list[str],
        dim: int = 256,  # width of the shared space
        hidden: int = 512,  # 0: linear projections; else a one-hidden-layer MLP per tower
        dropout: float = 0.1,
        temperature: float = 0.07,  # initial softmax temperature (CLIP: 0.07)
        learn_temperature: bool = True,
        anchors: int = 0,  # > 0: mix in the anchor space, this many training pairs kept per item
        anchor_power: float = 8.0,  # sharpens the kept similarities (ASIF's p)
        anchor_weight: float = 1.5,  # the anchor space's weight against the towers' space
        max_anchors: int = 10000,  # training pairs kept as anchors (a fixed sample above it)
    ) -> None:
        super().__init__()
        if len(pair) != 2 or not set(pair) <= set(in_dims):
            raise ValueError(
                f"retrieval head: pair must name two inputs, got {pair}; inputs: {sorted(in_dims)}"
            )
        if temperature <= 0:
            raise ValueError(f"retrieval head: temperature must be > 0, got {temperature}")
        self.pair = list(pair)
        self.reads = tuple(pair)
        self.dim = dim
        self.towers = nn.ModuleDict({n: tower(in_dims[n], dim, hidden, dropout) for n in pair})
        if anchor_weight < 0:
            raise ValueError(f"retrieval head: anchor_weight must be >= 0, got {anchor_weight}")
        self.anchors = (
            AnchorSpace(in_dims, pair, anchors, anchor_power, max_anchors) if anchors else None
        )
        self.anchor_weight = anchor_weight
        self.anchor_inputs = tuple(pair) if anchors else ()  # the trainer fills their keys
        scale = torch.tensor(math.log(1.0 / temperature))
        if learn_temperature:
            self.log_scale = nn.Parameter(scale)
        else:
            self.register_buffer("log_scale", scale)

    @property
    def out_dim(self) -> int:
        """Width of the embeddings ``embed`` gives outside training: ``dim``, plus one column per
        training pair with anchors."""
        return self.dim + (len(self.anchors) if self.anchors is not None else 0)

    def fill_anchors(self, features: dict[str, Tensor]) -> None:
        """Both sides' frozen features of the training pairs (row-aligned): the anchor keys."""
        if self.anchors is None:
            raise ValueError("retrieval head: fill_anchors needs anchors > 0")
        self.anchors.fill(features)

    def embed(self, name: str, features: Tensor) -> Tensor:
        """One side's features (B, D_in) -> unit vectors (B, dim); with anchors, outside
        training, (B, dim + N): the towers' and the anchor space's vectors, weighted."""
        z = F.normalize(self.towers[name](features), dim=-1)
        if self.anchors is None or self.training:
            return z
        w = self.anchor_weight
        r = self.anchors.embed(name, features)
        return torch.cat([z, r * math.sqrt(w)], dim=-1) / math.sqrt(1.0 + w)

    def forward(self, features: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        sides = [
            self.embed(n, features[n]) * masks[n].to(features[n].dtype).unsqueeze(-1)
            for n in self.pair
        ]
        return torch.stack(sides, dim=1)  # (B, 2, dim)

    def scale(self) -> Tensor:
        return self.log_scale.exp().clamp(max=MAX_SCALE)

    def loss(self, logits: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
        """Symmetric InfoNCE over the rows whose both sides are present (the towers' part of
        the embeddings: the anchor space has nothing to train)."""
        if self.anchors is not None:
            logits = F.normalize(logits[..., : self.dim], dim=-1)
        a, b = logits[:, 0], logits[:, 1]  # (B, dim) each
        present = (a.abs().sum(-1) > 0) & (b.abs().sum(-1) > 0)  # (B,)
        ids = target[present]  # (n, 2)
        sim = self.scale() * a[present] @ b[present].T  # (n, n): row i's a against every b
        positive = (ids[:, None, 0] == ids[None, :, 0]) | (ids[:, None, 1] == ids[None, :, 1])
        a_to_b = sim.logsumexp(1) - sim.masked_fill(~positive, -torch.inf).logsumexp(1)
        b_to_a = sim.logsumexp(0) - sim.masked_fill(~positive, -torch.inf).logsumexp(0)
        per_row = (a_to_b + b_to_a) / 2  # (n,)
        if reduction == "mean":
            return per_row.mean() if len(per_row) else logits.sum() * 0.0
        full = torch.zeros(len(present), dtype=per_row.dtype, device=per_row.device)
        return full.masked_scatter(present, per_row)

    def decode(self, logits: Tensor) -> dict[str, Tensor]:
        """Each row's match score: the cosine similarity of its two sides (NaN if one is
        missing)."""
        a, b = logits[:, 0], logits[:, 1]
        present = (a.abs().sum(-1) > 0) & (b.abs().sum(-1) > 0)
        sim = (a * b).sum(-1)
        return {"pred": torch.where(present, sim, torch.full_like(sim, float("nan")))}
