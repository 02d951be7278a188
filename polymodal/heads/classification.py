"""Binary, multiclass and multilabel heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.heads.base import Head, sigmoid_focal, softmax_focal
from polymodal.registry import register


@register("head", "binary")
class BinaryHead(Head):
    """One logit; ``class_weights`` = [pos_weight] for imbalanced data."""

    task = "binary"

    def row_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        logit, target = logits[..., 0], self._smooth(target.float())
        if self.loss_name == "focal":
            return sigmoid_focal(logit, target, self.focal_gamma, self._weights())
        return F.binary_cross_entropy_with_logits(
            logit, target, pos_weight=self._weights(), reduction="none"
        )

    def decode(self, logits: Tensor) -> dict[str, Tensor]:
        p = torch.sigmoid(logits[..., 0])
        return {"pred": (p >= 0.5).long(), "proba": torch.stack([1 - p, p], dim=-1)}


@register("head", "multiclass")
class MulticlassHead(Head):
    """Softmax over classes; ``class_weights`` are per-class weights (focal: alpha)."""

    task = "multiclass"

    def row_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        target = target.long()
        if self.loss_name == "focal":
            return softmax_focal(logits, target, self.focal_gamma, self._weights())
        return F.cross_entropy(
            logits,
            target,
            weight=self._weights(),
            reduction="none",
            label_smoothing=self.label_smoothing,
        )

    def decode(self, logits: Tensor) -> dict[str, Tensor]:
        proba = torch.softmax(logits, dim=-1)
        return {"pred": proba.argmax(-1), "proba": proba}


@register("head", "multilabel")
class MultilabelHead(Head):
    """Independent sigmoid per label; ``class_weights`` are per-label positive weights."""

    task = "multilabel"

    def row_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        target = self._smooth(target.float())
        if self.loss_name == "focal":
            loss = sigmoid_focal(logits, target, self.focal_gamma, self._weights())
        else:
            loss = F.binary_cross_entropy_with_logits(
                logits, target, pos_weight=self._weights(), reduction="none"
            )
        return loss.mean(-1)

    def decode(self, logits: Tensor) -> dict[str, Tensor]:
        proba = torch.sigmoid(logits)
        return {"pred": (proba >= 0.5).long(), "proba": proba}
