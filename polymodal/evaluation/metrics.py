"""Metrics as pure functions of numpy arrays, one per task, returning JSON-ready dicts."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm


def _safe(fn: Any, *args: Any, **kwargs: Any) -> float | None:
    """ROC-AUC and log loss are undefined when a class is absent from the targets: report None."""
    try:
        value = float(fn(*args, **kwargs))
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def binary_metrics(target: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    """``target`` (N,) in {0,1}; ``proba`` (N,) probability of the positive class."""
    target = target.astype(int)
    pred = (proba >= 0.5).astype(int)
    return {
        "accuracy": float(skm.accuracy_score(target, pred)),
        "precision": float(skm.precision_score(target, pred, zero_division=0)),
        "recall": float(skm.recall_score(target, pred, zero_division=0)),
        "f1": float(skm.f1_score(target, pred, zero_division=0)),
        "macro_f1": float(skm.f1_score(target, pred, average="macro", zero_division=0)),
        "roc_auc": _safe(skm.roc_auc_score, target, proba),
        "log_loss": _safe(skm.log_loss, target, np.clip(proba, 1e-7, 1 - 1e-7), labels=[0, 1]),
        "confusion_matrix": skm.confusion_matrix(target, pred, labels=[0, 1]).tolist(),
    }


def multiclass_metrics(target: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    """``target`` (N,) class ids; ``proba`` (N, C)."""
    target = target.astype(int)
    labels = list(range(proba.shape[1]))
    pred = proba.argmax(1)
    p, r, f, _ = skm.precision_recall_fscore_support(
        target, pred, labels=labels, average="macro", zero_division=0
    )
    auc = None
    if len(np.unique(target)) == proba.shape[1]:
        auc = _safe(skm.roc_auc_score, target, proba, multi_class="ovr", average="macro")
    return {
        "accuracy": float(skm.accuracy_score(target, pred)),
        "macro_precision": float(p),
        "macro_recall": float(r),
        "macro_f1": float(f),
        "roc_auc": auc,
        "log_loss": _safe(skm.log_loss, target, np.clip(proba, 1e-7, 1.0), labels=labels),
        "confusion_matrix": skm.confusion_matrix(target, pred, labels=labels).tolist(),
    }


def multilabel_metrics(target: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    """``target`` and ``proba`` (N, K)."""
    target = target.astype(int)
    pred = (proba >= 0.5).astype(int)
    return {
        "subset_accuracy": float(skm.accuracy_score(target, pred)),
        "micro_f1": float(skm.f1_score(target, pred, average="micro", zero_division=0)),
        "macro_f1": float(skm.f1_score(target, pred, average="macro", zero_division=0)),
        "hamming_loss": float(skm.hamming_loss(target, pred)),
    }


def regression_metrics(target: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """Both on the original scale of the target column."""
    err = pred - target
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "r2": _safe(skm.r2_score, target, pred),
    }


# For early stopping: is a larger value better?
HIGHER_IS_BETTER = {
    "accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "roc_auc": True,
    "macro_f1": True,
    "macro_precision": True,
    "macro_recall": True,
    "micro_f1": True,
    "subset_accuracy": True,
    "r2": True,
    "log_loss": False,
    "rmse": False,
    "mae": False,
    "hamming_loss": False,
    "loss": False,
}
