"""Shared pieces of the clothing-reviews benchmark: columns, the split, and the model variants."""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1].parent / "shared" / "data" / "clothing" / "reviews.csv"
TEXT = ["Title", "Review Text"]
NUMERIC = ["Age", "Positive Feedback Count"]
CATEGORICAL = ["Division Name", "Department Name", "Class Name"]
# task -> (target column, polymodal task, early-stopping metric). Neither target is ever an input
# of the other: every variant reads only TEXT + NUMERIC + CATEGORICAL.
TASKS = {
    "recommended": ("Recommended IND", "binary", "roc_auc"),
    "rating": ("Rating", "multiclass", "macro_f1"),
}


def split(frame: pd.DataFrame, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Seeded 80/20 train/test split stratified on Recommended IND; validation = 10% of train."""
    strat = frame["Recommended IND"]
    train, test = train_test_split(frame, test_size=0.2, random_state=seed, stratify=strat)
    train, val = train_test_split(
        train, test_size=0.1, random_state=seed, stratify=train["Recommended IND"]
    )
    return {"train": train, "val": val, "test": test}


# fastText-style hashed words + bigrams + character n-grams (chosen over a word bag of embeddings
# on the validation split; see README)
LEXICAL = {"encoder": {"type": "fasttext", "embed_dim": 64}, "preprocessing": {"max_length": 256}}


def _inputs(
    text: bool, lexical: dict[str, Any] | None, tabular: bool, minilm: dict[str, Any]
) -> list[dict]:
    inputs: list[dict[str, Any]] = []
    if text:  # one frozen MiniLM reads both text columns (tied: same weights, same tokenizer)
        inputs += [
            {"name": "review", "type": "text", "columns": ["Review Text"],
             "encoder": {"type": "minilm", **minilm}},
            {"name": "title", "type": "text", "columns": ["Title"], "tied": "review"},
        ]  # fmt: skip
    if lexical:  # a trainable bag of n-grams beside it: the lexical cues TF-IDF is good at
        inputs += [
            {"name": "review_words", "type": "text", "columns": ["Review Text"], **lexical},
            {"name": "title_words", "type": "text", "columns": ["Title"], "tied": "review_words"},
        ]  # fmt: skip
    if tabular:
        inputs += [
            {"name": "numeric", "type": "numeric", "columns": NUMERIC},
            {"name": "categorical", "type": "categorical", "columns": CATEGORICAL},
        ]
    return inputs


VARIANTS: dict[str, dict[str, Any]] = {
    "text_only": {"text": True, "tabular": False},
    "tabular_only": {"text": False, "tabular": True},
    "concat": {"fusion": {"type": "concat"}},
    "gated": {"fusion": {"type": "gated"}},
    "attention": {"fusion": {"type": "attention"}},
    "concat+lexical": {"lexical": True},
    "concat+lexical+balanced": {"lexical": True, "class_weights": "balanced"},
    "concat+lexical+focal": {"lexical": True, "loss": "focal"},
}
# not in the default run (see README: it does not fit the 30-minute budget on 2 cores)
OPTIONAL: dict[str, dict[str, Any]] = {
    "finetune_top2+lexical": {"lexical": True, "minilm": {"train_top_layers": 2}, "epochs": 1,
                              "pretrained_lr": 5e-5},
}  # fmt: skip


def config(variant: str, task: str, cache_dir: str | None, epochs: int = 10) -> dict[str, Any]:
    v = {**VARIANTS, **OPTIONAL}[variant]
    target, kind, metric = TASKS[task]
    output: dict[str, Any] = {"name": target, "task": kind, "head": {"hidden": 128}}
    if "class_weights" in v:
        output["class_weights"] = v["class_weights"]
    if "loss" in v:
        output["loss"] = v["loss"]
    return {
        "inputs": _inputs(
            v.get("text", True), LEXICAL if v.get("lexical") else None, v.get("tabular", True),
            v.get("minilm", {}),
        ),
        "fusion": v.get("fusion", {"type": "concat"}),
        "outputs": [output],
        "trainer": {
            "epochs": v.get("epochs", epochs), "batch_size": 64, "lr": 1e-3,
            "monitor": f"{target}.{metric}", "early_stopping_patience": 3, "seed": 0,
            "progress": False, "feature_cache_dir": cache_dir,
            "pretrained_lr": v.get("pretrained_lr"),
        },
    }  # fmt: skip


def score(proba: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Binary (proba (N, 2)): ROC-AUC, F1 of class 1, macro-F1, accuracy; multiclass: accuracy,
    macro-F1. Class ids are positions in sorted label order."""
    labels = np.unique(target)
    y = np.searchsorted(labels, target)
    pred = proba.argmax(1)
    out = {
        "accuracy": float(skm.accuracy_score(y, pred)),
        "macro_f1": float(skm.f1_score(y, pred, average="macro")),
    }
    if proba.shape[1] == 2:
        out |= {
            "roc_auc": float(skm.roc_auc_score(y, proba[:, 1])),
            "f1": float(skm.f1_score(y, pred)),
        }
    return {k: round(v, 4) for k, v in out.items()}


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
