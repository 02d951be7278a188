"""What the time-series benchmark trains: one config per encoder (the same for every dataset
except the series' length and windows), the watch folds, and the settings of the quick run.

Settings were chosen before any test fold was looked at, and selection between encoders uses
validation data only (a held-out training subject on watch, 20% of the training rows on UEA).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1].parent / "shared" / "data"
WATCH = DATA / "watch"
UEA = DATA / "uea"
UEA_SETS = ("JapaneseVowels", "SelfRegulationSCP1")
ENCODERS = ("series_cnn", "series_gru", "patchtst", "minirocket", "minirocket_diff")
GRADIENT = ("series_cnn", "series_gru", "patchtst")  # trained by gradient, early-stopped on val
RIDGE = ("minirocket", "minirocket_diff")  # fixed features, closed-form ridge: no early stopping
# a watch on the left wrist records the mirror image (through the plane normal to x) of the same
# movement on the right: ax and the rotation rates about y and z change sign; chosen on inner
# validation folds (the six training subjects of each fold) among the 7 axis sign flips
MIRROR = {"column": "side", "value": "left", "negate": ["ax", "wy", "wz"]}

WINDOW, STRIDE = 200, 100  # watch: 4 s windows at 50 Hz, half overlapping
FOLDS = ((1, 2), (3, 4), (5, 6), (7, 8))  # watch test subjects per fold (never trained on)


def encoder(name: str, quick: bool) -> dict[str, Any]:
    """The encoder block: the library's defaults, MiniRocket smaller in the quick run."""
    if name in RIDGE:
        return {"type": "minirocket", "num_features": 2016 if quick else 10_000,
                "difference": name == "minirocket_diff"}  # fmt: skip
    if name == "series_gru":
        return {"type": "series_gru", "hidden": 64}
    if name == "patchtst":
        return {"type": "patchtst", "patch": 16, "dim": 64, "layers": 2}
    return {"type": "series_cnn", "pool": "mean"}


def config(
    name: str, length: int, quick: bool, window: int | None = None, side: bool = False
) -> dict[str, Any]:
    """Config for encoder ``name`` on series of up to ``length`` steps (cut into windows of
    ``window`` steps when set); with ``side``, the ``side`` column fused (concat) and the
    left-wrist recordings mirrored into right-wrist axes (MIRROR)."""
    pre: dict[str, Any] = {"max_length": length}
    if window:
        pre |= {"window": window, "stride": STRIDE}
    if name in GRADIENT:
        pre |= {"augment": True}  # random crop, scaling, jitter, time masking
    if side:
        pre |= {"mirror": MIRROR}
    inputs: list[dict[str, Any]] = [
        {"name": "signal", "type": "timeseries", "columns": ["series"],
         "encoder": encoder(name, quick), "preprocessing": pre}
    ]  # fmt: skip
    if side:
        inputs.append({"name": "side", "type": "categorical"})
    head: dict[str, Any] = {"dropout": 0.0} if name in RIDGE else {}
    # no feature cache: every fit computes its own features, so train_seconds are comparable
    trainer: dict[str, Any] = {"progress": False, "seed": 0, "feature_cache": False}
    if name in RIDGE:  # fixed features: the closed-form ridge head is the whole fit
        trainer |= {"epochs": 0, "head_solver": "ridge"}
    else:
        trainer |= {"epochs": 2 if quick else 20, "lr": 0.002, "batch_size": 64,
                    "monitor": "label.window_accuracy" if window else "label.accuracy",
                    "early_stopping_patience": 6}  # fmt: skip
    return {
        "inputs": inputs,
        "outputs": [{"name": "label", "task": "multiclass", "head": head}],
        "trainer": trainer,
    }


def inner_folds(frame: pd.DataFrame) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """(train, val) of the 12 inner validation folds of watch: within each outer fold's six
    training subjects, three folds of two held-out subjects; the outer test subjects never
    appear. Rows keep the table's order, with a fresh index."""
    for test in FOLDS:
        subjects = sorted(set(frame["subject"]) - set(test))
        for k in range(3):
            held = frame["subject"].isin(subjects[2 * k : 2 * k + 2])
            train = frame["subject"].isin(subjects) & ~held
            yield frame[train].reset_index(drop=True), frame[held].reset_index(drop=True)


__all__ = [
    "ENCODERS", "FOLDS", "GRADIENT", "MIRROR", "RIDGE", "UEA", "UEA_SETS", "WATCH", "config",
    "encoder", "inner_folds",
]  # fmt: skip
