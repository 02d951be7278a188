"""Per-frame occlusion for inputs whose tensors hold parts along axis 1 (a clip's frames, see
``Preprocessor.parts``): which frames moved a row's prediction.

Each frame in turn is replaced by zeros (the normalisation mean: a grey frame) and the row is
scored again with everything else held fixed; the value is how much the explained class's
probability falls (multilabel: the mean absolute change over labels; regression: the prediction
minus the occluded one, in the model's units). One batch of T + 1 clips through the encoder.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def probabilities(scores: Tensor, task: str) -> Tensor:
    """Class scores (n, C) -> what occlusion compares: probabilities (binary and multilabel:
    per label; multiclass: softmax), or the prediction itself for regression."""
    if task == "multiclass":
        return torch.softmax(scores, dim=-1)
    if task in ("binary", "multilabel"):
        return torch.sigmoid(scores)
    return scores


@torch.no_grad()
def part_occlusion(
    encoder: nn.Module,
    x: Tensor,
    scores: Callable[[Tensor], Tensor],
    task: str,
    target: int,
) -> list[float]:
    """(T,) falls of the explained value when each part (frame) of ``x`` (1, T, ...) alone is
    zeroed; ``scores`` maps the input's embeddings (n, D) to class scores (n, C) of the row."""
    parts = x.shape[1]
    variants = x[:1].repeat(parts + 1, *[1] * (x.dim() - 1))  # row 0: the clip as it is
    steps = torch.arange(parts)
    variants[steps + 1, steps] = 0.0
    values = probabilities(scores(encoder(variants)).float(), task)  # (T + 1, C)
    if task == "multilabel":
        return (values[:1] - values[1:]).abs().mean(-1).tolist()  # type: ignore[no-any-return]
    column = target if values.shape[-1] > target else 0
    return (values[0, column] - values[1:, column]).tolist()  # type: ignore[no-any-return]


__all__ = ["part_occlusion", "probabilities"]
