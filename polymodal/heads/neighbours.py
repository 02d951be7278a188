"""Neighbour index of a retrieval-augmented caption head: the training items' keys (unit vectors
of a frozen encoder's features) and their caption token ids.

The index lives in buffers, so it is saved with the weights (``model.safetensors``, no pickle)
and a loaded model retrieves exactly what the trained one did. A plain matrix product finds the
nearest items: at a few thousand items that costs well under a millisecond per query, and it
needs no extra dependency (FAISS pays off from about a hundred thousand items).

Leave-one-out: a training query never retrieves itself. An item is recognised by its features
(cosine >= ``SELF_COSINE``), which is exact because the keys come from a frozen encoder; with
``leave_out="caption"`` every item that shares a caption with it is left out too (the skin-tone
variants of an emoji, the other photos of a caption), so training sees neighbours as unlike the
answer as a new item's are at prediction time.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.utils.errors import ArtifactError

PAD, BOS = 0, 2
SELF_COSINE = 0.9999  # an index entry this close to a training query is the query itself
LEAVE_OUT = ("item", "caption")
BUFFERS = ("keys", "tokens", "groups")


class NeighbourIndex(nn.Module):
    """``k`` nearest training items of each query: their caption tokens and similarities."""

    keys: Tensor
    tokens: Tensor
    groups: Tensor

    def __init__(self, dim: int, k: int, leave_out: str = "item") -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"caption head: retrieve must be >= 1 neighbours, got {k}")
        if leave_out not in LEAVE_OUT:
            raise ValueError(
                f"caption head: leave_out must be one of {LEAVE_OUT}, got {leave_out!r}"
            )
        self.dim, self.k, self.leave_out = dim, k, leave_out
        self.register_buffer("keys", torch.zeros(0, dim))  # (N, D) unit vectors
        self.register_buffer("tokens", torch.zeros(0, 1, dtype=torch.long))  # (N, T), no <bos>
        self.register_buffer("groups", torch.zeros(0, dtype=torch.long))  # (N,) caption ids

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def fill(self, keys: Tensor, tokens: Tensor) -> None:
        """``keys`` (N, D) features of the training items, ``tokens`` (N, T) their encoded
        captions (``<bos> .. <eos>``, pad 0). Replaces any earlier index."""
        if keys.dim() != 2 or keys.shape[1] != self.dim or len(keys) != len(tokens):
            raise ValueError(
                f"caption head index: expected keys (N, {self.dim}) and tokens (N, T) for the "
                f"same N, got {tuple(keys.shape)} and {tuple(tokens.shape)}"
            )
        tokens = tokens.long()
        if tokens.shape[1] and bool((tokens[:, 0] == BOS).all()):
            tokens = tokens[:, 1:]  # <bos> is never copied
        words = (tokens > 3).sum(1)  # ids 0-3 are pad, unknown, begin, end
        if len(tokens) and bool((words == 0).any()):
            row = int(torch.nonzero(words == 0)[0, 0])
            raise ValueError(
                f"caption head index: training item {row} has an empty caption; expected at "
                "least one word in every training caption"
            )
        width = int((tokens != PAD).sum(1).max()) if len(tokens) else 1
        tokens = tokens[:, : max(width, 1)].contiguous()
        groups = (
            torch.unique(tokens, dim=0, return_inverse=True)[1] if len(tokens) else tokens[:, 0]
        )
        dev = self.keys.device
        self.keys = F.normalize(keys.detach().float(), dim=-1).to(dev)
        self.tokens, self.groups = tokens.to(dev), groups.to(dev)

    def search(self, query: Tensor, leave_self_out: bool) -> tuple[Tensor, Tensor]:
        """(B, D) -> caption tokens (B, k, T) and cosine similarities (B, k), most similar
        first; empty slots (fewer items than ``k``, or all left out) are pads with similarity 0."""
        if not len(self):
            raise ArtifactError(
                f"caption head: retrieve: {self.k} needs the neighbour index of the training "
                "captions, and this model holds none (not fitted yet, or saved without its "
                "index); fit the model (Predictor.fit) or set retrieve: 0"
            )
        sim = F.normalize(query.float(), dim=-1) @ self.keys.T  # (B, N)
        if leave_self_out:
            sim = sim.masked_fill(self._left_out(sim), -torch.inf)
        k = min(self.k, len(self))
        top, at = sim.topk(k, dim=1)  # (B, k)
        tokens = self.tokens[at]  # (B, k, T)
        empty = torch.isinf(top)
        tokens = tokens.masked_fill(empty[..., None], PAD)
        top = top.masked_fill(empty, 0.0)
        if k < self.k:
            tokens = F.pad(tokens, (0, 0, 0, self.k - k), value=PAD)
            top = F.pad(top, (0, self.k - k), value=0.0)
        return tokens, top

    def _left_out(self, sim: Tensor) -> Tensor:
        """(B, N) True for the query itself (and, with ``leave_out="caption"``, every item that
        shares a caption with it)."""
        same = sim >= SELF_COSINE
        if self.leave_out == "item":
            return same
        groups = self.groups.expand_as(sim)
        n_groups = int(self.groups.max()) + 1
        hit = torch.zeros(sim.shape[0], n_groups, device=sim.device)
        hit.scatter_add_(1, groups, same.float())  # (B, G): captions of the query's own items
        return hit.gather(1, groups) > 0

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """A saved index is as large as its training set, a freshly built one is empty: take
        the saved sizes before the default copy."""
        for name in BUFFERS:
            saved = state_dict.get(prefix + name)
            if isinstance(saved, Tensor):
                current: Tensor = getattr(self, name)
                setattr(self, name, current.new_empty(saved.shape))
        super()._load_from_state_dict(state_dict, prefix, *args)
