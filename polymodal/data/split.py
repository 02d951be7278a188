"""Train / validation / test splits: a split column if the table has one, else a seeded,
stratified random split."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from polymodal.config import DataConfig, OutputConfig
from polymodal.data.base import DataError, where
from polymodal.data.io import Table, TableLike, read_any

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
    """(train, val, test), each keeping the original index labels; ``stratify_on`` (a target
    column) keeps class shares alike across the parts when every class has enough rows."""
    if cfg.split_column:
        train, val, test = _by_column(frame, cfg.split_column, source)
        if len(train) == 0:
            raise DataError(f"{source}: split column {cfg.split_column!r} marks no row as 'train'")
        return train, val, test
    fractions = (cfg.val_fraction, cfg.test_fraction)
    if min(fractions) < 0 or sum(fractions) >= 1:
        raise DataError(
            f"{source}: val_fraction ({cfg.val_fraction}) + test_fraction ({cfg.test_fraction}) "
            "must be non-negative and leave rows for training (sum < 1)"
        )
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
        pos = int(bad.to_numpy().argmax())  # positional: index labels may repeat
        raise DataError(
            f"{where(source, frame.index[pos], column)}: unknown split "
            f"{frame[column].iloc[pos]!r}; "
            f"expected one of {sorted(SPLIT_NAMES)}"
        )
    mapped = names.map(SPLIT_NAMES)
    train, val, test = (frame[mapped == s] for s in ("train", "val", "test"))
    return train, val, test


def _split(
    frame: pd.DataFrame, share: float, stratify_on: str | None, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    if share <= 0 or len(frame) < 2:
        return frame, frame.iloc[:0]
    strat = None
    if stratify_on and stratify_on in frame.columns:
        labels = frame[stratify_on].map(str)  # str: list cells (multilabel) are unhashable
        counts = labels.value_counts(dropna=False)
        n_out = max(1, round(share * len(frame)))
        if counts.min() >= 2 and n_out >= len(counts) and len(frame) - n_out >= len(counts):
            strat = labels
    a, b = train_test_split(frame, test_size=share, random_state=seed, stratify=strat)
    return a, b


def resolve_tables(
    cfg: DataConfig,
    outputs: list[OutputConfig],
    train: TableLike | None = None,
    val: TableLike | None = None,
    test: TableLike | None = None,
    base_dir: str | Path | None = None,
) -> tuple[Table, Table | None, Table | None]:
    """(train, val, test) from the tables given, else the config's; without a validation table
    the training table is split (by ``split_column`` or seeded, stratified on the first
    classification output), and its test part is used when no test table is given (with one,
    only a validation part is split off)."""
    train = train if train is not None else cfg.train
    val = val if val is not None else cfg.val
    test = test if test is not None else cfg.test
    if train is None:
        raise ValueError("no training table: pass one to fit() or set data.train in the config")
    frame, base, src = read_any(train, "train", base_dir)
    if len(frame) == 0:
        raise DataError(f"{src}: the table has no rows; expected at least one training row")
    test_part = read_any(test, "test", base_dir) if test is not None else None
    if val is not None:
        return (frame, base, src), read_any(val, "val", base_dir), test_part
    first = outputs[0]
    strat = first.name if first.task in ("binary", "multiclass") else None
    if test_part is not None:  # a test table is given: no training rows are held out for one
        cfg = cfg.model_copy(update={"test_fraction": 0.0})
    tr, va, te = split_frame(frame, cfg, strat, src)
    if test_part is None and len(te):
        test_part = (te, base, f"{src} (test split)")
    val_part = (va, base, f"{src} (val split)") if len(va) else None  # val_fraction 0: none
    return (tr, base, src), val_part, test_part
