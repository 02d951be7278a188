"""Anchor space of a retrieval head: each side described by its similarity to the training pairs
(ASIF, Norelli et al. 2023; relative representations, Moschella et al. 2023).

An item's anchor vector holds its cosine similarity to each training row's frozen features of
the same side, keeping the ``k`` largest, raised to ``power`` (sharper), the rest zero, then
L2-normalised. Row ``j`` of the image anchors and row ``j`` of the text anchors are one training
pair, so an icon and a name meet in this space when they resemble the same training items, each
in its own modality: no weights, and it rests on what the frozen encoders know of unseen items
(another drawing style, a name never seen in training) rather than on what a trained tower
memorised. The head mixes it with its trained towers' space (``anchor_weight``).

The keys come from frozen encoders (filled once before the first epoch, like a caption head's
neighbour index) and live in buffers, so they are saved with the weights (``model.safetensors``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.utils.errors import ArtifactError


class _Keys(nn.Module):
    """One side's anchor keys: (N, D) unit vectors."""

    keys: Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("keys", torch.zeros(0, dim))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Saved keys are as many as the training rows, fresh ones none: take the saved size."""
        saved = state_dict.get(prefix + "keys")
        if isinstance(saved, Tensor):
            self.keys = self.keys.new_empty(saved.shape)
        super()._load_from_state_dict(state_dict, prefix, *args)


class AnchorSpace(nn.Module):
    """``embed(name, features)`` -> (B, N) sparse unit vectors over the N training pairs."""

    def __init__(
        self, in_dims: dict[str, int], pair: list[str], k: int, power: float, limit: int = 10000
    ) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"retrieval head: anchors must be >= 1 (or 0: off), got {k}")
        if limit < k:
            raise ValueError(f"retrieval head: max_anchors must be >= anchors ({k}), got {limit}")
        if power <= 0:
            raise ValueError(f"retrieval head: anchor_power must be > 0, got {power}")
        self.pair, self.k, self.power, self.limit = list(pair), k, power, limit
        self.sides = nn.ModuleDict({n: _Keys(in_dims[n]) for n in pair})

    def __len__(self) -> int:
        keys: Tensor = self.sides[self.pair[0]].keys  # type: ignore[assignment]
        return int(keys.shape[0])

    def fill(self, features: dict[str, Tensor]) -> None:
        """Each side's (N, D) frozen features of the same N training pairs (row-aligned). Over
        ``limit`` pairs, a fixed random sample of ``limit`` of them (seed 0) is kept: every
        embedding holds one column per anchor, so the index stays bounded on a large table."""
        sizes = {n: tuple(features[n].shape) for n in self.pair}
        keys: dict[str, Tensor] = {}
        for n in self.pair:
            side: Any = self.sides[n]
            want = side.keys.shape[1]
            if features[n].dim() != 2 or features[n].shape[1] != want:
                raise ValueError(
                    f"retrieval head anchors: expected {n!r} features (N, {want}), got {sizes[n]}"
                )
            keys[n] = F.normalize(features[n].detach().float(), dim=-1)
        if len({k.shape[0] for k in keys.values()}) != 1:
            raise ValueError(f"retrieval head anchors: both sides need the same rows, got {sizes}")
        n_rows = next(iter(keys.values())).shape[0]
        if n_rows > self.limit:
            keep = torch.randperm(n_rows, generator=torch.Generator().manual_seed(0))[: self.limit]
            keys = {n: k[keep.sort().values] for n, k in keys.items()}
        for n, k in keys.items():
            side = self.sides[n]
            side.keys = k.to(side.keys.device)  # type: ignore[union-attr]

    def embed(self, name: str, features: Tensor) -> Tensor:
        """(B, D) features of side ``name`` -> (B, N) anchor vectors (unit, or 0 where the
        features are all 0: a missing side)."""
        keys: Tensor = self.sides[name].keys  # type: ignore[assignment]
        if not len(keys):
            raise ArtifactError(
                f"retrieval head: anchors: {self.k} needs the training pairs' features, and this "
                "model holds none (not fitted yet, or saved without them); fit the model "
                "(Predictor.fit) or set anchors: 0"
            )
        sim = F.normalize(features.float(), dim=-1) @ keys.T  # (B, N)
        k = min(self.k, keys.shape[0])
        kth = sim.topk(k, dim=-1).values[:, -1:]  # (B, 1)
        kept = torch.where(sim >= kth, sim.clamp(min=0.0) ** self.power, torch.zeros_like(sim))
        return F.normalize(kept, dim=-1).to(features.dtype)


__all__ = ["AnchorSpace"]
