"""Train / validation / test splits: a split column if the table has one, else a seeded,
stratified random split."""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

from polymodal.config import DataConfig
from polymodal.data.base import DataError, where

SPLIT_NAMES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
}


def split_frame(
    frame: pd.DataFrame, cfg: DataConfig, stratify_on: str | None, source: str = "<table>"
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    if cfg.split_column:
        return _by_column(frame, cfg.split_column, source)
    rest, test = _split(frame, cfg.test_fraction, stratify_on, cfg.seed)
    val_share = cfg.val_fraction / max(1e-9, 1.0 - cfg.test_fraction)
    train, val = _split(rest, val_share, stratify_on, cfg.seed + 1)
    if len(train) == 0:
        raise DataError(f"{source}: no training rows left after the split ({len(frame)} rows)")
    return train, val, test


def _by_column(
    frame: pd.DataFrame, column: str, source: str
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    if column not in frame.columns:
        raise DataError(
            f"{source}: split column {column!r} not found; columns are {list(frame.columns)}"
        )
    names = frame[column].astype(str).str.strip().str.lower()
    bad = ~names.isin(list(SPLIT_NAMES))
    if bad.any():
        row = bad.idxmax()
        raise DataError(
            f"{where(source, row, column)}: unknown split {frame.loc[row, column]!r}; "
            f"expected one of {sorted(SPLIT_NAMES)}"
        )
    mapped = names.map(SPLIT_NAMES)
    parts = tuple(frame[mapped == s] for s in ("train", "val", "test"))
    return parts  # type: ignore[return-value]


def _split(
    frame: pd.DataFrame, share: float, stratify_on: str | None, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    if share <= 0 or len(frame) < 2:
        return frame, frame.iloc[:0]
    strat = None
    if stratify_on and stratify_on in frame.columns:
        counts = frame[stratify_on].value_counts(dropna=False)
        n_out = max(1, round(share * len(frame)))
        if counts.min() >= 2 and n_out >= len(counts) and len(frame) - n_out >= len(counts):
            strat = frame[stratify_on].astype(str)
    a, b = train_test_split(frame, test_size=share, random_state=seed, stratify=strat)
    return a, b
