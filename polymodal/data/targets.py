"""Target columns -> training tensors and back: label vocabularies, multilabel sets, standardised
regression values; saved as JSON."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import torch

from polymodal.config import OutputConfig
from polymodal.data.base import DataError, where
from polymodal.data.io import is_missing
from polymodal.data.stats import Moments, Stats, merge


def _label(value: Any) -> Any:
    """Labels as plain JSON values (numpy ints -> int, 1.0 -> 1)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


TASKS = ("binary", "multiclass", "multilabel", "regression")


class TargetEncoder:
    """One output column <-> head targets. Binary: float 0/1 with the second sorted class as
    positive; multiclass: class indices; multilabel: (N, K) 0/1; regression: z-scores."""

    def __init__(self, task: str, label_separator: str = "|") -> None:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; valid choices: {', '.join(TASKS)}")
        self.task = task
        self.label_separator = label_separator
        self.classes: list[Any] = []
        self.mean, self.std = 0.0, 1.0
        self.counts_: list[int] = []  # training rows per class (not saved)
        self.rows_ = 0

    @property
    def num_outputs(self) -> int:
        return len(self.classes) if self.task in ("multiclass", "multilabel") else 1

    # -- fit -----------------------------------------------------------------------------------
    def fit(self, series: pd.Series, source: str = "<train>") -> TargetEncoder:
        return self.finish_fit(self.partial_fit(series, source=source), source, str(series.name))

    def partial_fit(
        self, series: pd.Series, stats: Stats | None = None, source: str = "<train>"
    ) -> Stats:
        """Mergeable statistics of these rows: label counts (labels JSON-encoded, so 1 and "1"
        stay apart across processes), or the values' moments for regression."""
        self._check_missing(series, source)
        if self.task == "regression":
            part: Stats = {"moments": Moments.of(self._floats(series, source))}
        elif self.task == "multilabel":
            cells = [self._split(cell) for cell in series]
            labels = Counter(json.dumps(x) for cell in cells for x in set(cell))
            part = {"labels": labels, "rows": len(series)}
        else:
            labels = Counter(json.dumps(_label(v)) for v in series)
            part = {"labels": labels, "rows": len(series)}
        return dict(merge(stats, part))

    def finish_fit(self, stats: Stats, source: str = "<train>", column: str = "") -> TargetEncoder:
        if self.task == "regression":
            moments: Moments = stats["moments"]
            self.mean, self.std = float(moments.mean[0]), float(np.sqrt(moments.var[0])) or 1.0
            return self
        counts = {json.loads(k): int(c) for k, c in stats.get("labels", Counter()).items()}
        if self.task == "multilabel":
            labels = sorted(counts, key=str)
            if not labels:
                raise DataError(
                    f"{source}, column {column!r}: the multilabel target has no labels at "
                    f"all; expected lists or {self.label_separator!r}-separated strings"
                )
        else:
            labels = sorted(counts, key=lambda v: (str(type(v)), v))
        if len(labels) < 2 and self.task != "multilabel":
            raise DataError(
                f"{source}, column {column!r}: the target has only one class ({labels}); "
                "need at least 2"
            )
        if self.task == "binary" and len(labels) > 2:
            raise DataError(
                f"{source}, column {column!r}: binary target has {len(labels)} classes "
                f"({labels[:10]}); use task: multiclass"
            )
        self.classes = labels
        self.counts_ = [counts[c] for c in labels]  # rows per class: balanced class weights
        self.rows_ = int(stats.get("rows", 0))
        return self

    def balanced_weights(self) -> list[float]:
        """scikit-learn's "balanced" weights from the training counts (see
        :func:`class_weights_balanced`), for in-memory and streamed fits alike."""
        counts = np.maximum(np.asarray(self.counts_, dtype=np.float64), 1)
        if self.task == "multiclass":
            return (self.rows_ / (len(counts) * counts)).tolist()
        pos = counts[1:] if self.task == "binary" else counts
        return ((self.rows_ - pos) / pos).tolist()

    # -- transform -----------------------------------------------------------------------------
    def transform(self, series: pd.Series, source: str = "<table>") -> torch.Tensor:
        self._check_missing(series, source)
        if self.task == "regression":
            return torch.tensor(
                (self._floats(series, source) - self.mean) / self.std, dtype=torch.float32
            )
        lookup = {c: i for i, c in enumerate(self.classes)}
        if self.task == "multilabel":
            out = torch.zeros(len(series), len(self.classes))
            for r, (row, cell) in enumerate(series.items()):
                for lbl in self._split(cell):
                    out[r, self._index(lookup, lbl, source, row, series.name)] = 1.0
            return out
        codes, uniques = pd.factorize(series)  # each distinct label looked up once
        first = np.unique(codes, return_index=True)[1]  # a row of each, for errors
        rows = series.index[first]
        ids = np.array(
            [
                self._index(lookup, _label(v), source, r, series.name)
                for v, r in zip(uniques, rows, strict=True)
            ],
            dtype=np.int64,
        )[codes]
        dtype = torch.float32 if self.task == "binary" else torch.long
        return torch.tensor(ids, dtype=dtype)

    def _index(self, lookup: dict[Any, int], value: Any, source: str, row: Any, column: Any) -> int:
        if value not in lookup:
            known = self.classes[:20] + (["..."] if len(self.classes) > 20 else [])
            raise DataError(
                f"{where(source, row, str(column))}: label {value!r} was not seen in training; "
                f"known labels: {known}"
            )
        return lookup[value]

    def _split(self, cell: Any) -> list[str]:
        if isinstance(cell, (list, tuple, np.ndarray)):
            return [str(x) for x in cell]
        return [x.strip() for x in str(cell).split(self.label_separator) if x.strip()]

    def _floats(self, series: pd.Series, source: str) -> np.ndarray:
        values = pd.to_numeric(series, errors="coerce")
        bad = values.isna() & series.notna()
        if bad.any():
            pos = int(np.argmax(bad.to_numpy()))  # positional: index labels may repeat
            raise DataError(
                f"{where(source, series.index[pos], str(series.name))}: expected a number, "
                f"got {series.iloc[pos]!r}"
            )
        return values.to_numpy(dtype=np.float64, na_value=np.nan)

    def _check_missing(self, series: pd.Series, source: str) -> None:
        numeric = pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)
        cells = series[series.isna()] if numeric else series  # numbers: only NaN is missing
        missing = [
            row
            for row, v in cells.items()
            if not isinstance(v, (list, np.ndarray)) and is_missing(v)
        ]
        if missing:
            raise DataError(
                f"{where(source, missing[0], str(series.name))}: the target is missing "
                f"({len(missing)} rows in all); every training/evaluation row needs a label"
            )

    # -- decode --------------------------------------------------------------------------------
    def decode(self, pred: torch.Tensor) -> list[Any]:
        """Head predictions -> column values (labels, label lists joined, or rescaled numbers)."""
        if self.task == "regression":
            return self.inverse(pred).tolist()
        if self.task == "multilabel":
            return [
                self.label_separator.join(
                    str(c) for c, on in zip(self.classes, row, strict=True) if on
                )
                for row in pred.tolist()
            ]
        return [self.classes[i] for i in pred.long().tolist()]

    def inverse(self, values: torch.Tensor) -> torch.Tensor:
        """Standardised regression values -> the column's scale."""
        return values.double() * self.std + self.mean

    def proba_labels(self) -> list[Any]:
        return list(self.classes)

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "label_separator": self.label_separator,
            "classes": self.classes,
            "mean": self.mean,
            "std": self.std,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TargetEncoder:
        enc = cls(state["task"], state.get("label_separator", "|"))
        enc.classes, enc.mean, enc.std = (
            list(state["classes"]),
            float(state["mean"]),
            float(state["std"]),
        )
        return enc


def class_weights_balanced(targets: torch.Tensor, task: str, num_outputs: int) -> list[float]:
    """scikit-learn's "balanced" weights n / (k * count); binary and multilabel -> positive weights."""
    if task == "multiclass":
        counts = torch.bincount(targets.long(), minlength=num_outputs).double().clamp(min=1)
        return (counts.sum() / (num_outputs * counts)).tolist()
    t = targets.double().reshape(len(targets), -1)
    pos = t.sum(0).clamp(min=1)
    return ((len(t) - pos) / pos).tolist()


def class_weights(out: OutputConfig, enc: TargetEncoder) -> list[float] | None:
    """The loss weights an output's ``class_weights`` asks for: ``balanced`` (from the training
    counts), one weight per label by name, or a plain list; None for regression or none asked."""
    cw = out.class_weights
    if cw is None or out.task == "regression":
        return None
    if cw == "balanced":
        return enc.balanced_weights()
    if isinstance(cw, dict):
        labels = [str(c) for c in enc.classes]
        unknown = set(cw) - set(labels)
        if unknown:
            raise ValueError(
                f"outputs.{out.name}.class_weights: unknown labels {sorted(unknown)}; labels are {labels}"
            )
        weights = [float(cw.get(lbl, 1.0)) for lbl in labels]
        return weights[1:] if out.task == "binary" else weights
    return [float(w) for w in cw]
