"""One answer per row from predictions per window (a long series cut into windows, see
``TableDataset.row_of``): the row's log-probabilities are the mean of its windows'
(classification; the normalised geometric mean of their probabilities), its regression value
the mean of theirs. Applied after the model, in Python, whatever computed the window logits
(PyTorch, ONNX Runtime, another process): the exported graph takes windows."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.models.multimodal import MODALITY_SUFFIX

Tensors = dict[str, Tensor]


def _mean(values: Tensor, row_of: Tensor, n_rows: int) -> Tensor:
    """(W, ...) -> (n_rows, ...): the mean over each row's windows."""
    total = torch.zeros(n_rows, *values.shape[1:], dtype=values.dtype)
    total.index_add_(0, row_of, values)
    count = torch.bincount(row_of, minlength=n_rows).clamp(min=1).to(values.dtype)
    return total / count.reshape(-1, *([1] * (values.dim() - 1)))


def aggregate_logits(task: str, logits: Tensor, row_of: Tensor, n_rows: int) -> Tensor:
    """Window logits -> row logits for ``task``: multiclass, the mean log-softmax; binary and
    multilabel, per label the logit of the mean log-probabilities of yes and no; regression
    (and anything else) the mean."""
    logits = logits.float()
    if task == "multiclass":
        return _mean(F.log_softmax(logits, dim=-1), row_of, n_rows)
    if task in ("binary", "multilabel"):
        yes = _mean(F.logsigmoid(logits), row_of, n_rows)
        no = _mean(F.logsigmoid(-logits), row_of, n_rows)
        return yes - no
    return _mean(logits, row_of, n_rows)


def task_of(model: nn.Module, key: str) -> str:
    """The task of an output key (``<head>`` or ``<head>@modalities``)."""
    heads: Any = model.heads
    return str(heads[key.split(MODALITY_SUFFIX)[0]].task)


def to_rows(model: nn.Module, logits: Tensors, row_of: Tensor, n_rows: int) -> Tensors:
    """Every output's window logits averaged per row."""
    return {
        k: aggregate_logits(task_of(model, k), v.cpu(), row_of.cpu(), n_rows)
        for k, v in logits.items()
    }


def row_masks(masks: Tensors, row_of: Tensor, n_rows: int) -> Tensors:
    """A row's input is present when any of its windows has it."""
    out = {}
    for k, m in masks.items():
        present = torch.zeros(n_rows, dtype=torch.bool)
        present[row_of[m.bool().cpu()]] = True
        out[k] = present
    return out


def first_windows(row_of: Tensor, n_rows: int) -> Tensor:
    """(n_rows,) the position of each row's first window (windows are in row order)."""
    return torch.searchsorted(row_of.cpu(), torch.arange(n_rows))


def row_targets(targets: Tensors, row_of: Tensor, n_rows: int) -> Tensors:
    """Targets per row (every window of a row carries the row's)."""
    first = first_windows(row_of, n_rows)
    return {k: v[first] for k, v in targets.items()}


def window_metrics(
    model: nn.Module, logits: Tensors, targets: Tensors, pipeline: Any
) -> dict[str, dict[str, float]]:
    """Per output, the windows scored on their own (what a window-level benchmark reports):
    ``window_accuracy`` for classification (multilabel: every label right), ``window_rmse``
    in the target's units for regression."""
    out: dict[str, dict[str, float]] = {}
    heads: Any = model.heads
    for name, head in heads.items():
        if name not in targets or name not in logits:
            continue
        task, pred = str(head.task), head.decode(logits[name])["pred"].cpu()
        y = targets[name].cpu()
        if task in ("binary", "multiclass"):
            out[name] = {"window_accuracy": float((pred == y.long()).float().mean())}
        elif task == "multilabel":
            out[name] = {"window_accuracy": float((pred == y.long()).all(-1).float().mean())}
        elif task == "regression":
            enc = pipeline.targets[name]
            err = enc.inverse(pred).float() - enc.inverse(y).float()
            out[name] = {"window_rmse": float(err.pow(2).mean().sqrt())}
    return out


__all__ = [
    "aggregate_logits",
    "first_windows",
    "row_masks",
    "row_targets",
    "to_rows",
    "window_metrics",
]
