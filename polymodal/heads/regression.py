"""Regression head (targets are standardised by the target encoder; decode stays standardised,
the pipeline maps predictions back to the column's scale)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from polymodal.heads.base import Head
from polymodal.registry import register


@register("head", "regression")
class RegressionHead(Head):
    task = "regression"

    def row_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        pred, target = logits[..., 0], target.float()
        if self.loss_name == "huber":
            return F.huber_loss(pred, target, reduction="none")
        if self.loss_name == "mae":
            return (pred - target).abs()
        return F.mse_loss(pred, target, reduction="none")

    def decode(self, logits: Tensor) -> dict[str, Tensor]:
        return {"pred": logits[..., 0]}
