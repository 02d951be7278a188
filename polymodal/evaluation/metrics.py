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


def first_positive_ranks(
    queries: np.ndarray, gallery: np.ndarray, ids: np.ndarray, chunk: int = 1024
) -> np.ndarray:
    """Rank (1 = best) of each query's best-scoring positive among the row-aligned gallery, by
    dot product: 1 + the number of non-positive items scoring above it. Rows ``i`` and ``j`` are
    positives when they share a group id on either side (``ids`` (N, 2))."""
    ranks = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        sim = queries[start : start + chunk] @ gallery.T  # (q, N)
        part = ids[start : start + chunk]
        pos = (part[:, None, 0] == ids[None, :, 0]) | (part[:, None, 1] == ids[None, :, 1])
        best = np.where(pos, sim, -np.inf).max(1, keepdims=True)
        ranks[start : start + chunk] = 1 + ((sim > best) & ~pos).sum(1)
    return ranks


def retrieval_metrics(
    a: np.ndarray,
    b: np.ndarray,
    ids: np.ndarray,
    names: tuple[str, str],
    ks: tuple[int, ...] = (1, 5, 10),
) -> dict[str, Any]:
    """Recall@k and median rank in both directions for row-aligned unit vectors ``a``, ``b``
    (N, D) (row i of ``a`` matches row i of ``b``); ``ids`` (N, 2) are group ids."""
    out: dict[str, Any] = {}
    for (qn, q), (gn, g) in (((names[0], a), (names[1], b)), ((names[1], b), (names[0], a))):
        ranks = first_positive_ranks(q, g, ids)
        for k in ks:
            out[f"{qn}_to_{gn}_R@{k}"] = float((ranks <= k).mean()) if len(ranks) else None
        out[f"{qn}_to_{gn}_median_rank"] = float(np.median(ranks)) if len(ranks) else None
    top = max(ks)
    both = [out[f"{names[0]}_to_{names[1]}_R@{top}"], out[f"{names[1]}_to_{names[0]}_R@{top}"]]
    out[f"mean_R@{top}"] = None if None in both else float(np.mean(both))
    out["n_pairs"] = len(a)
    return out


def caption_metrics(hypotheses: list[str], references: list[str]) -> dict[str, Any]:
    """Corpus BLEU-4 (sacrebleu, 0-100, one reference per row) and exact-match rate of
    lower-cased, whitespace-normalised captions."""
    import sacrebleu

    norm = lambda t: " ".join(t.lower().split())  # noqa: E731
    hyps, refs = [norm(h) for h in hypotheses], [norm(r) for r in references]
    bleu = sacrebleu.corpus_bleu(hyps, [refs]) if hyps else None
    return {
        "bleu4": float(bleu.score) if bleu is not None else None,
        "exact_match": float(np.mean([h == r for h, r in zip(hyps, refs, strict=True)]))
        if hyps
        else None,
    }


def higher_is_better(metric: str) -> bool:
    """Early stopping direction; ranks (``*_median_rank``) are better low."""
    return HIGHER_IS_BETTER.get(metric, not metric.endswith("median_rank"))


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
    "bleu4": True,
    "exact_match": True,
    "window_accuracy": True,  # windowed inputs: windows scored on their own
    "window_rmse": False,
}
