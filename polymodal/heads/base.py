"""Task heads: a small MLP to logits, plus the task's loss and its decoding of logits.

Each head owns ``loss`` and ``decode`` so adding a task never touches the model or the loop.
Heads work on (B, D) and on (B, M, D) (one token per modality, for decision-level fusion).
"""

from __future__ import annotations

import abc
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOSSES: dict[str, tuple[str, ...]] = {
    "binary": ("default", "focal"),
    "multiclass": ("default", "focal"),
    "multilabel": ("default", "focal"),
    "regression": ("default", "mse", "huber", "mae"),
}


class Head(nn.Module, abc.ABC):
    task: ClassVar[str] = ""

    def __init__(
        self,
        in_dim: int,
        num_outputs: int,
        hidden: int = 0,  # 0: a single Linear layer
        dropout: float = 0.1,
        loss: str = "default",
        focal_gamma: float = 2.0,
        class_weights: list[float] | None = None,
        label_smoothing: float = 0.0,  # classification: soften targets, curbs overconfidence
    ) -> None:
        super().__init__()
        if loss not in LOSSES[self.task]:
            raise ValueError(
                f"{self.task} head: unknown loss {loss!r}; valid choices: {', '.join(LOSSES[self.task])}"
            )
        self.in_dim, self.num_outputs, self.hidden, self.dropout = (
            in_dim,
            num_outputs,
            hidden,
            dropout,
        )
        if label_smoothing and self.task == "regression":
            raise ValueError("regression head: label_smoothing applies to classification only")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(
                f"{self.task} head: label_smoothing must be in [0, 1), got {label_smoothing}"
            )
        self.loss_name, self.focal_gamma = loss, focal_gamma
        self.label_smoothing = label_smoothing
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden:
            layers += [nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout)]
        layers.append(nn.Linear(hidden or in_dim, num_outputs))
        self.net = nn.Sequential(*layers)
        weights = (
            torch.tensor(class_weights, dtype=torch.float32) if class_weights else torch.ones(0)
        )
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # (..., num_outputs)

    def loss(self, logits: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
        per_row = self.row_loss(logits, target)  # (B,)
        return per_row.mean() if reduction == "mean" else per_row

    @abc.abstractmethod
    def row_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss per row, (B,)."""

    @abc.abstractmethod
    def decode(self, logits: Tensor) -> dict[str, Tensor]:
        """Logits -> ``{"pred": ..., "proba": ...}`` (regression: ``pred`` only)."""

    def _smooth(self, target: Tensor) -> Tensor:
        """Binary targets pulled towards 0.5 by ``label_smoothing``."""
        return target * (1 - self.label_smoothing) + 0.5 * self.label_smoothing

    def _weights(self) -> Tensor | None:
        weights: Tensor = self.class_weights  # type: ignore[assignment]
        return weights if weights.numel() else None


def sigmoid_focal(
    logits: Tensor, target: Tensor, gamma: float, pos_weight: Tensor | None
) -> Tensor:
    """Focal loss (Lin et al. 2017) on independent sigmoids, elementwise."""
    bce = F.binary_cross_entropy_with_logits(
        logits, target, reduction="none", pos_weight=pos_weight
    )
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    return (1 - p_t).pow(gamma) * bce


def softmax_focal(logits: Tensor, target: Tensor, gamma: float, weight: Tensor | None) -> Tensor:
    """Multiclass focal loss per row; ``weight`` acts as the per-class alpha."""
    logp = F.log_softmax(logits, dim=-1)
    logp_t = logp.gather(1, target.unsqueeze(1)).squeeze(1)
    loss = -((1 - logp_t.exp()).pow(gamma)) * logp_t
    if weight is not None:
        loss = loss * weight[target]
    return loss
