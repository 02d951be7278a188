"""Numeric columns -> standardised float features; missing values -> 0 with a presence mask."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from polymodal.data.base import DataError, Preprocessor, Transformed, where
from polymodal.data.paths import ANYWHERE, FileAccess
from polymodal.data.stats import Moments, Stats, merge
from polymodal.registry import register


@register("preprocessor", "numeric")
class NumericPreprocessor(Preprocessor):
    modality = "numeric"

    def __init__(self, clip: float | None = 5.0, log_transform: bool = False) -> None:
        self.clip = clip  # clip z-scores to +-clip (outliers); None disables
        self.log_transform = log_transform  # sign(x) * log1p(|x|) before standardising
        self.mean: list[float] = []
        self.std: list[float] = []

    def _values(self, frame: pd.DataFrame, columns: list[str], source: str) -> np.ndarray:
        out = np.empty((len(frame), len(columns)), dtype=np.float64)
        for j, col in enumerate(columns):
            try:
                values = pd.to_numeric(frame[col], errors="coerce")
            except (TypeError, ValueError):  # e.g. a string that is not valid UTF-8
                values = pd.Series([_number(v) for v in frame[col]], index=frame.index)
            bad = (values.isna() & frame[col].notna()).to_numpy().copy()  # blanks: missing
            if bad.any():  # (only then: a pass in Python over the cells)
                blank = [isinstance(v, str) and not v.strip() for v in frame[col].tolist()]
                bad &= ~np.array(blank, dtype=bool)
            if bad.any():
                pos = int(np.argmax(bad))  # positional: index labels may repeat
                raise DataError(
                    f"{where(source, frame.index[pos], col)}: expected a number, "
                    f"got {frame[col].iloc[pos]!r}"
                )
            out[:, j] = values.to_numpy(dtype=np.float64, na_value=np.nan)
        out[np.isinf(out)] = np.nan  # +-inf cannot be standardised: treat as missing
        if self.log_transform:
            out = np.sign(out) * np.log1p(np.abs(out))
        return out

    def partial_fit(
        self,
        frame: pd.DataFrame,
        columns: list[str],
        base_dir: Path,
        stats: Stats | None = None,
        source: str = "<train>",
        access: FileAccess = ANYWHERE,
    ) -> Stats:
        part = Moments.of(self._values(frame, columns, source))  # (N, F), NaN where missing
        return {"moments": merge((stats or {}).get("moments"), part)}

    def finish_fit(self, stats: Stats, columns: list[str]) -> NumericPreprocessor:
        moments: Moments | None = stats.get("moments")
        if moments is None:  # no training rows at all
            moments = Moments.of(np.full((0, len(columns)), np.nan))
        std = np.sqrt(moments.var)  # an all-missing column gets mean 0, std 1
        self.mean = moments.mean.tolist()
        self.std = np.where(std > 0, std, 1.0).tolist()  # constant column: std 0 -> 1
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
        x = self._values(frame, columns, source)
        with np.errstate(over="ignore", invalid="ignore"):
            z = (x - np.array(self.mean)) / np.array(self.std)
            if self.clip is not None:
                z = np.clip(z, -self.clip, self.clip)
            z = z.astype(np.float32)  # values beyond float32 overflow to inf here
        z[~np.isfinite(z)] = np.nan  # out of range once standardised: treated as missing
        present = ~np.isnan(z).all(1)
        z = np.nan_to_num(z, nan=0.0)
        return Transformed(torch.from_numpy(z), torch.from_numpy(present))

    def spec(self) -> dict[str, Any]:
        return {"in_features": len(self.mean)}

    def fitted_state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        self.mean, self.std = list(state["mean"]), list(state["std"])


def _number(value: Any) -> float:
    """``value`` as a float, NaN when it is not one (cell by cell, where pandas gave up)."""
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return float("nan")
