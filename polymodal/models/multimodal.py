"""The assembled model: per-modality encoders -> one fusion -> one head per output.

Built modules are injected (not configs), so a researcher can hand in any encoder, fusion or head.
``forward`` takes and returns plain dicts of tensors: exportable, nothing data-dependent in Python.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Tensors = dict[str, torch.Tensor]

MODALITY_SUFFIX = "@modalities"  # decision-level fusion also returns per-modality logits
COMBINED = ("binary", "multiclass", "multilabel", "regression")  # tasks late fusion combines


class MultimodalModel(nn.Module):
    def __init__(
        self,
        encoders: dict[str, nn.Module],
        fusion: nn.Module,
        heads: dict[str, nn.Module],
        tied: dict[str, str] | None = None,
    ) -> None:
        """``tied[input] = owner``: ``input`` is encoded by ``encoders[owner]`` (shared weights)."""
        super().__init__()
        self.encoders = nn.ModuleDict(dict(sorted(encoders.items())))
        self.tied = dict(sorted((tied or {}).items()))
        bad = {k: v for k, v in self.tied.items() if v not in self.encoders or k in self.encoders}
        if bad:
            raise ValueError(f"tied inputs must map new names to existing encoders, got {bad}")
        self.inputs = sorted([*self.encoders, *self.tied])  # every input, sorted
        self.fusion = fusion
        self.heads = nn.ModuleDict(dict(sorted(heads.items())))
        self.decision_level = bool(getattr(fusion, "decision_level", False))
        # a head with ``reads`` (retrieval towers, a caption's source) takes those inputs' own
        # features; fusion runs only when some head reads the fused vector
        self.uses_fusion = any(getattr(h, "reads", None) is None for h in self.heads.values())
        # name -> FeatureCache for frozen encoders, attached by the trainer (never saved/exported)
        self.feature_caches: dict[str, Callable[[nn.Module, torch.Tensor], torch.Tensor]] = {}

    def encode(self, features: Tensors) -> Tensors:
        """Per-modality embeddings, each (B, D_m)."""
        out: Tensors = {}
        for name in self.inputs:
            enc = self.encoders[self.tied.get(name, name)]
            cache = self.feature_caches.get(name)
            out[name] = cache(enc, features[name]) if cache is not None else enc(features[name])
        return out

    def forward(self, features: Tensors, masks: Tensors) -> Tensors:
        return self.fuse(self.encode(features), masks)

    def fuse(self, embeddings: Tensors, masks: Tensors) -> Tensors:
        """Fusion and heads over the encoders' outputs (:meth:`encode`): explanations rerun this
        part alone with a modality masked or permuted, without running any encoder again."""
        masks = {k: masks[k].bool() for k in self.inputs}
        fused = self.fusion(embeddings, masks) if self.uses_fusion else None  # (B, D) / (B, M, D)
        out: Tensors = {}
        for name, head in self.heads.items():
            reads = getattr(head, "reads", None)
            if reads is not None:
                out[name] = head({k: embeddings[k] for k in reads}, {k: masks[k] for k in reads})
                continue
            logits = head(fused)
            if self.decision_level and head.task in COMBINED:
                out[name + MODALITY_SUFFIX] = logits  # (B, M, C)
                stacked = torch.stack([masks[k] for k in self.inputs], dim=1)  # (B, M)
                logits = self.fusion.combine(logits, stacked, head.task)  # type: ignore[operator]
            out[name] = logits
        return out

    def loss(
        self, outputs: Tensors, targets: Tensors, masks: Tensors, weights: dict[str, float]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Weighted sum of the heads' losses. With decision-level fusion each modality's head is
        trained on its own (per-row loss, missing modalities excluded) so the experts stay
        independent; a learned combination rule additionally trains on the combined output."""
        total: torch.Tensor | None = None
        parts: dict[str, float] = {}
        for name, head in self.heads.items():
            if self.decision_level and head.task in COMBINED:
                value = self._per_modality_loss(
                    head, outputs[name + MODALITY_SUFFIX], targets[name], masks
                )
                if getattr(self.fusion, "rule", "") == "learned":
                    value = value + head.loss(outputs[name], targets[name])  # type: ignore[operator]
            else:
                value = head.loss(outputs[name], targets[name])  # type: ignore[operator]
            parts[name] = float(value.detach())
            term = weights.get(name, 1.0) * value
            total = term if total is None else total + term
        assert total is not None, "a model has at least one head"
        return total, parts

    def _per_modality_loss(
        self, head: nn.Module, logits: torch.Tensor, target: torch.Tensor, masks: Tensors
    ) -> torch.Tensor:
        b, m = logits.shape[:2]
        present = torch.stack([masks[k].bool() for k in self.inputs], dim=1).float()  # (B, M)
        flat_target = (
            target.unsqueeze(1).expand(b, m, *target.shape[1:]).reshape(b * m, *target.shape[1:])
        )
        per_row = head.loss(logits.reshape(b * m, -1), flat_target, reduction="none")  # type: ignore[operator]
        per_row = per_row.reshape(b, m, -1).mean(-1)  # (B, M)
        return (per_row * present).sum() / present.sum().clamp(min=1.0)
