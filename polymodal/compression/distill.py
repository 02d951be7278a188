"""Knowledge distillation: a smaller student learns from a saved teacher's outputs.

The teacher runs once over the training rows (its own preprocessing, frozen-feature caches
included) and its logits become extra targets (``<output>@teacher``). The student is an ordinary
``MultimodalModel`` whose ``loss`` adds the distillation term, so the normal training loop trains
it unchanged and it saves and loads like any model:

    loss = (1 - alpha) * hard_loss + alpha * T^2 * soft_loss(student / T, teacher / T)

soft_loss is the KL divergence of the softened class distributions (multiclass), the binary
cross-entropy to the teacher's softened probabilities (binary / multilabel), or the squared error
to the teacher's value (regression). Rows without teacher logits (validation) get the hard loss.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.data.dataset import TableDataset
from polymodal.evaluation.evaluate import predict_logits
from polymodal.export.artifact import Artifact
from polymodal.models import MultimodalModel
from polymodal.train.loop import feature_caches

TEACHER = "@teacher"


def soft_loss(student: Tensor, teacher: Tensor, task: str, temperature: float) -> Tensor:
    """Distillation loss of one output, scaled by T^2 so its gradients keep their size as T
    grows (Hinton et al., 2015)."""
    t = temperature
    if task == "multiclass":
        target = F.softmax(teacher / t, dim=-1)
        return F.kl_div(F.log_softmax(student / t, dim=-1), target, reduction="batchmean") * t * t
    if task in ("binary", "multilabel"):
        target = torch.sigmoid(teacher / t)
        return F.binary_cross_entropy_with_logits(student / t, target) * t * t
    return F.mse_loss(student, teacher)


class Distilled(MultimodalModel):
    """A student model (same modules, same weights file) trained toward a teacher's logits."""

    def __init__(self, student: MultimodalModel, temperature: float, alpha: float) -> None:
        if temperature <= 0 or not 0.0 <= alpha <= 1.0:
            raise ValueError(
                f"distillation needs temperature > 0 and alpha in [0, 1], got {temperature}, {alpha}"
            )
        super().__init__(dict(student.encoders), student.fusion, dict(student.heads), student.tied)
        self.temperature, self.alpha = temperature, alpha

    def loss(
        self, outputs: dict[str, Tensor], targets: dict[str, Tensor], masks: dict[str, Tensor],
        weights: dict[str, float],
    ) -> tuple[Tensor, dict[str, float]]:  # fmt: skip
        hard, parts = super().loss(outputs, targets, masks, weights)
        soft: Tensor | None = None
        for name, head in self.heads.items():
            teacher = targets.get(name + TEACHER)
            if teacher is None:
                continue
            task = str(head.task)
            value = soft_loss(outputs[name].float(), teacher, task, self.temperature)
            parts[name + TEACHER] = float(value.detach())
            term = weights.get(name, 1.0) * value
            soft = term if soft is None else soft + term
        if soft is None:
            return hard, parts
        return (1 - self.alpha) * hard + self.alpha * soft, parts


def teacher_targets(
    teacher: Artifact, frame: pd.DataFrame, base_dir: Path, source: str
) -> dict[str, Tensor]:
    """The teacher's logits for every row of ``frame``: ``{<output>@teacher: (N, C)}``."""
    inputs = teacher.pipeline.transform_inputs(frame, base_dir, source)
    teacher.model.eval()
    with feature_caches(teacher.model, teacher.pipeline, teacher.config.trainer):
        logits = predict_logits(teacher.model, TableDataset(inputs, {}))
    return {name + TEACHER: logits[name] for name in teacher.model.heads}


def check_compatible(teacher: Artifact, outputs: dict[str, str]) -> None:
    """The student must share at least one output with the teacher, with the same task
    (``outputs``: the student's name -> task)."""
    mine = {o.name: o.task for o in teacher.config.outputs}
    shared = sorted(set(outputs) & set(mine))
    bad = {k: (outputs[k], mine[k]) for k in shared if outputs[k] != mine[k]}
    if not shared or bad:
        raise ValueError(
            f"the student's outputs {outputs} must include the teacher's {mine} with the same "
            f"task{f'; different tasks (student, teacher): {bad}' if bad else ''}"
        )
