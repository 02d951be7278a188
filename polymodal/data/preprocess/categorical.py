"""Categorical columns -> one index per column: 0 = missing, 1 = unknown (unseen in training)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from polymodal.data.base import DataError, Preprocessor, Transformed, where
from polymodal.data.io import is_missing
from polymodal.data.paths import ANYWHERE, FileAccess
from polymodal.data.stats import Stats, merge
from polymodal.registry import register

MISSING, UNKNOWN = 0, 1


def _key(value: Any) -> str:
    """Categories compared as strings, so 3 and "3" and 3.0 are one category."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


@register("preprocessor", "categorical")
class CategoricalPreprocessor(Preprocessor):
    modality = "categorical"

    def __init__(self, min_freq: int = 1, max_categories: int = 10000) -> None:
        self.min_freq = min_freq  # rarer categories map to "unknown"
        self.max_categories = max_categories
        self.vocab: list[list[str]] = []  # per column, index 2.. in order

    def partial_fit(
        self,
        frame: pd.DataFrame,
        columns: list[str],
        base_dir: Path,
        stats: Stats | None = None,
        source: str = "<train>",
        access: FileAccess = ANYWHERE,
    ) -> Stats:
        parts = []
        for col in columns:
            counts: Counter[str] = Counter()
            codes, uniques = _factorize(frame[col], source)
            tally = np.bincount(codes[codes >= 0], minlength=len(uniques))
            for value, times in zip(uniques, tally, strict=True):
                if not is_missing(value):
                    counts[_key(value)] += int(times)  # 3 and 3.0 pool into "3"
            parts.append(counts)
        return {"counts": merge((stats or {}).get("counts"), parts)}

    def finish_fit(self, stats: Stats, columns: list[str]) -> CategoricalPreprocessor:
        vocab = []
        for counts in stats.get("counts") or [Counter() for _ in columns]:
            kept = [k for k, c in counts.items() if c >= self.min_freq]
            kept = sorted(kept, key=lambda k: (-counts[k], k))[: self.max_categories]
            vocab.append(sorted(kept))
        self.vocab = vocab
        return self

    def transform(
        self,
        frame: pd.DataFrame,
        columns: list[str],
        base_dir: Path,
        source: str = "<table>",
        bad_cells: str = "raise",
        access: FileAccess = ANYWHERE,
    ) -> Transformed:
        ids = np.zeros((len(frame), len(columns)), dtype=np.int64)
        for j, (col, vocab) in enumerate(zip(columns, self.vocab, strict=True)):
            lookup = {v: i + 2 for i, v in enumerate(vocab)}
            codes, uniques = _factorize(frame[col], source)  # each distinct value once
            mapped = np.array(
                [MISSING if is_missing(u) else lookup.get(_key(u), UNKNOWN) for u in uniques]
                + [MISSING],  # code -1 (NaN / None) -> the last entry
                dtype=np.int64,
            )
            ids[:, j] = mapped[codes]
        out = torch.from_numpy(ids)  # (N, K)
        return Transformed(out, (out != MISSING).any(1))

    def spec(self) -> dict[str, Any]:
        return {"cardinalities": [len(v) + 2 for v in self.vocab]}

    def fitted_state(self) -> dict[str, Any]:
        return {"vocab": self.vocab}

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        self.vocab = [list(v) for v in state["vocab"]]


def _factorize(series: pd.Series, source: str) -> tuple[np.ndarray, Any]:
    """``pd.factorize``, or a :class:`DataError` naming the first cell that is no category (a
    list or a mapping from a JSON table)."""
    try:
        return pd.factorize(series, use_na_sentinel=True)
    except TypeError:
        for row, value in zip(series.index, series.tolist(), strict=True):
            try:
                hash(value)
            except TypeError:
                raise DataError(
                    f"{where(source, row, str(series.name))}: expected a category (text or a "
                    f"number), got a {type(value).__name__}"
                ) from None
        raise
