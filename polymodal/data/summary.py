"""A JSON summary of a table as the model sees it: each column's role, type and missing rate, and
the target distribution. Written into the saved model at training time, so a report can describe
the training data without the table at hand."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from polymodal.config import InputConfig, OutputConfig
from polymodal.data.io import is_missing

EXAMPLE_CHARS = 60  # longest example value shown per column
MAX_CLASSES = 50  # target distributions with more labels are cut to the most frequent


def _roles(inputs: list[InputConfig], outputs: list[OutputConfig]) -> dict[str, str]:
    roles = {c: f"input {inp.name} ({inp.type})" for inp in inputs for c in inp.cols}
    for out in outputs:
        roles.setdefault(out.name, f"target ({out.task})")
    return roles


def _missing(values: pd.Series) -> np.ndarray:
    """Missing cells: None/NaN, and blank strings (read as missing by every preprocessor)."""
    return np.fromiter((is_missing(v) for v in values), dtype=bool, count=len(values))


def _example(values: pd.Series, missing: np.ndarray) -> str:
    present = values[~missing]
    if present.empty:
        return ""
    text = str(present.iloc[0])
    if isinstance(present.iloc[0], bytes):
        text = f"<{len(present.iloc[0])} bytes>"
    return text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 1] + "…"


def _column(name: str, values: pd.Series, role: str) -> dict[str, Any]:
    missing = _missing(values)
    row: dict[str, Any] = {
        "column": name,
        "role": role,
        "dtype": str(values.dtype),
        "missing_rate": float(missing.mean()) if len(values) else 0.0,
        "example": _example(values, missing),
    }
    try:
        row["n_unique"] = int(values[~missing].nunique())
    except TypeError:  # unhashable cells (e.g. lists)
        row["n_unique"] = None
    return row


def _target(values: pd.Series, task: str) -> dict[str, Any]:
    present = values[~_missing(values)]
    if task == "regression":
        num = pd.to_numeric(present, errors="coerce").dropna()
        if num.empty:
            return {}
        return {k: float(getattr(num, k)()) for k in ("mean", "std", "min", "max")}
    if task in ("binary", "multiclass"):
        counts = present.astype(str).value_counts()
        return {str(k): int(v) for k, v in counts.head(MAX_CLASSES).items()}
    return {}


def table_summary(
    frame: pd.DataFrame, inputs: list[InputConfig], outputs: list[OutputConfig]
) -> dict[str, Any]:
    """``{"n_rows", "columns": [{column, role, dtype, missing_rate, n_unique, example}],
    "targets": {output: {label: count} or {mean, std, min, max}}}``; columns the config does not
    read are listed with role ``unused``."""
    roles = _roles(inputs, outputs)
    columns = [_column(str(c), frame[c], roles.get(str(c), "unused")) for c in frame.columns]
    targets = {o.name: _target(frame[o.name], o.task) for o in outputs if o.name in frame.columns}
    return {"n_rows": len(frame), "columns": columns, "targets": targets}
