"""Mirroring a series by another column: a sensor worn on the left wrist records the mirror image
of the same movement on the right, so the rows whose ``column`` holds ``value`` have the
``negate`` channels' signs flipped before anything is fitted or encoded. For a 3-axis
accelerometer and gyroscope mirrored through the plane normal to axis x that is ``[ax, wy, wz]``
(a reflection flips the acceleration along x, and the rotation rates about the other two axes).

    preprocessing: {mirror: {column: side, value: left, negate: [ax, wy, wz]}}

``column`` must be a column one of the model's inputs reads (so that a request carries it); a
row whose cell is empty is not mirrored. Channels are named as in the series files' headers (or
``channels``), or given by position (0-based) for inline series.

The flip is exact: fitting negates the raw values, and the transform maps a standardised value
z = (x - mean) / std of a mirrored row to (-x - mean) / std = -z - 2 mean / std.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from polymodal.data.base import DataError

KEYS = {"column", "value", "negate"}


def check(mirror: dict[str, Any] | None) -> None:
    """The option's shape, at construction (a ``ValueError`` naming what is wrong)."""
    if mirror is None:
        return
    where = "timeseries preprocessing mirror"
    if not isinstance(mirror, dict) or set(mirror) != KEYS:
        raise ValueError(
            f"{where}: expected {{column, value, negate}} (e.g. {{column: side, value: left, "
            f"negate: [ax, wy, wz]}}), got {mirror!r}"
        )
    negate = mirror["negate"]
    if (
        not isinstance(mirror["column"], str)
        or not isinstance(negate, list)
        or not negate
        or not all(isinstance(c, str | int) and not isinstance(c, bool) for c in negate)
        or len(set(negate)) != len(negate)
    ):
        raise ValueError(
            f"{where}: column must be a column name and negate a list of distinct channel names "
            f"or positions, got {mirror!r}"
        )


def rows(mirror: dict[str, Any] | None, frame: pd.DataFrame, source: str) -> np.ndarray:
    """(N,) True where a row is mirrored (its ``column`` cell equals ``value`` as text)."""
    if mirror is None:
        return np.zeros(len(frame), dtype=bool)
    column = mirror["column"]
    if column not in frame.columns:
        raise DataError(
            f"{source}: missing column {column!r}, which timeseries preprocessing mirror reads; "
            f"the table has {list(map(str, frame.columns))}"
        )
    cells = frame[column]
    return (cells.notna() & (cells.astype(str) == str(mirror["value"]))).to_numpy()


def channels(mirror: dict[str, Any], names: list[str] | None, width: int) -> list[int]:
    """Positions of the ``negate`` channels among ``names`` (or ``width`` unnamed ones)."""
    out = []
    for c in mirror["negate"]:
        if isinstance(c, int):
            ok = 0 <= c < width
            out.append(c)
        else:
            ok = names is not None and c in names
            out.append(names.index(c) if ok and names is not None else -1)
        if not ok:
            raise ValueError(
                f"timeseries preprocessing mirror: no channel {c!r} to negate; expected one of "
                f"{names if names else list(range(width))}"
            )
    return out


def flip_raw(values: np.ndarray, negate: list[int]) -> np.ndarray:
    """Raw (T, C) values of a mirrored row, as fitting sees them."""
    out = values.copy()
    out[:, negate] *= -1
    return out


def flip_slots(
    values: torch.Tensor,
    index: torch.Tensor,
    mirrored: np.ndarray,
    negate: list[int],
    shift: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct standardised tensors (U, T, C + 1) and each row's slot (N,) -> the same with a
    mirrored copy of every tensor a mirrored row uses (``-z - shift`` on the negated channels'
    real steps, ``shift`` = 2 mean / std), those rows pointing at the copies."""
    picked = torch.tensor(mirrored, dtype=torch.bool) & (index != 0)  # slot 0: no series
    if not bool(picked.any()):
        return values, index
    slots = index[picked].unique()
    copies = values[slots].clone()
    real = copies[..., -1:] > 0
    copies[..., negate] = torch.where(real, -copies[..., negate] - shift, 0.0)
    moved = torch.zeros(len(values), dtype=torch.long)
    moved[slots] = torch.arange(len(values), len(values) + len(slots))
    index = index.clone()
    index[picked] = moved[index[picked]]
    return torch.cat([values, copies]), index


__all__ = ["channels", "check", "flip_raw", "flip_slots", "rows"]
