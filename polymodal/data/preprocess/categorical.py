"""Categorical columns -> one index per column: 0 = missing, 1 = unknown (unseen in training)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch

from polymodal.data.base import Preprocessor, Transformed
from polymodal.data.io import is_missing
from polymodal.registry import register

MISSING, UNKNOWN = 0, 1


def _key(value: Any) -> str:
    """Categories compared as strings, so 3 and "3" and 3.0 are one category."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


@register("preprocessor", "categorical")
class CategoricalPreprocessor(Preprocessor):
    modality = "categorical"

    def __init__(self, min_freq: int = 1, max_categories: int = 10000) -> None:
        self.min_freq = min_freq  # rarer categories map to "unknown"
        self.max_categories = max_categories
        self.vocab: list[list[str]] = []  # per column, index 2.. in order

    def fit(
        self, frame: pd.DataFrame, columns: list[str], base_dir: Path
    ) -> CategoricalPreprocessor:
        self.vocab = []
        for col in columns:
            keys = pd.Series([_key(v) for v in frame[col] if not is_missing(v)], dtype=object)
            counts = keys.value_counts()
            counts = counts[counts >= self.min_freq].head(self.max_categories)
            self.vocab.append(sorted(counts.index.tolist()))
        return self

    def transform(
        self,
        frame: pd.DataFrame,
        columns: list[str],
        base_dir: Path,
        source: str = "<table>",
        bad_cells: str = "raise",
    ) -> Transformed:
        ids = torch.zeros(len(frame), len(columns), dtype=torch.long)
        for j, (col, vocab) in enumerate(zip(columns, self.vocab, strict=True)):
            lookup = {v: i + 2 for i, v in enumerate(vocab)}
            ids[:, j] = torch.tensor(
                [MISSING if is_missing(v) else lookup.get(_key(v), UNKNOWN) for v in frame[col]],
                dtype=torch.long,
            )
        return Transformed(ids, (ids != MISSING).any(1))

    def spec(self) -> dict[str, Any]:
        return {"cardinalities": [len(v) + 2 for v in self.vocab]}

    def fitted_state(self) -> dict[str, Any]:
        return {"vocab": self.vocab}

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        self.vocab = [list(v) for v in state["vocab"]]
