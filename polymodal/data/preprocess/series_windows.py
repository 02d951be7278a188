"""Windows of series tensors (``window`` / ``stride`` of the timeseries preprocessing): where they
start, cutting one series, and turning a column's whole series into one entry per window with
the row it came from (``Transformed.row_of``). Pure functions of (T, C + 1) tensors whose last
channel is the step mask, so the transform and the explanations cut alike."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from polymodal.data.base import Transformed

log = logging.getLogger("polymodal.data")


def check_options(
    window: int | None, stride: int | None, max_length: int, resample: int | None
) -> None:
    where = "timeseries preprocessing"
    if window is None:
        if stride is not None:
            raise ValueError(f"{where}: stride ({stride}) needs a window")
        return
    if window < 1 or (stride is not None and stride < 1):
        raise ValueError(f"{where}: window and stride must be at least 1, got {window}, {stride}")
    if resample is not None:
        raise ValueError(f"{where}: window and resample exclude each other (resample: null)")
    if window > max_length:
        raise ValueError(
            f"{where}: window ({window}) is longer than max_length ({max_length}); max_length "
            "is the longest stretch of a series that is cut into windows"
        )


def starts(real: np.ndarray, window: int, stride: int) -> list[int]:
    """Window starts for a series whose real steps are ``real`` (T,) bool: every ``stride``
    steps while a whole window fits before the last real step (one window at 0 when none does),
    leaving out windows without a real step unless no window has one."""
    n = int(np.flatnonzero(real)[-1]) + 1 if real.any() else 0
    at = list(range(0, max(n - window, 0) + 1, stride))
    kept = [s for s in at if real[s : s + window].any()]
    return kept or [0]


def cut(x: torch.Tensor, at: list[int], window: int) -> torch.Tensor:
    """(T, C + 1) -> (k, window, C + 1): the windows starting at ``at``, zero-padded (masked)
    past the end. Indexing, so gradients flow back to ``x``."""
    first = torch.tensor(at, dtype=torch.long)
    spare = max(0, int(first.max()) + window - len(x))
    return F.pad(x, (0, 0, 0, spare))[first[:, None] + torch.arange(window)]


def windows(
    whole: Transformed, starts_of: Callable[[np.ndarray], list[int]], window: int, length: int
) -> Transformed:
    """Whole series (one per distinct cell, ``index`` per row; slot 0 the empty one) -> one
    entry per window, ``row_of`` its row; equal cells share their windows' tensors.
    ``length``: the steps a series was cut to before (series reaching it are logged)."""
    assert whole.index is not None
    series = whole.values  # (U, T, C + 1)
    at = [starts_of((s[:, -1] > 0).numpy()) for s in series]
    per_slot = torch.tensor([len(a) for a in at])  # (U,) windows of each series
    flat = torch.tensor([s for a in at for s in a], dtype=torch.long)  # (K,)
    spare = max(0, int(flat.max()) + window - series.shape[1])
    slot = torch.repeat_interleave(torch.arange(len(series)), per_slot)  # (K,)
    cuts = F.pad(series, (0, 0, 0, spare))[slot[:, None], flat[:, None] + torch.arange(window)]
    counts = per_slot[whole.index]  # (N,) windows of each row
    row_of = torch.repeat_interleave(torch.arange(len(counts)), counts)  # (W,)
    within = torch.arange(len(row_of)) - (torch.cumsum(counts, 0) - counts)[row_of]
    index = (torch.cumsum(per_slot, 0) - per_slot)[whole.index][row_of] + within  # (W,)
    full = int((series[:, -1, -1] > 0).sum()) if series.shape[1] >= length else 0
    if full:  # distinct series whose last kept step is real: perhaps cropped
        log.info(
            "%d series reach max_length (%d steps): steps beyond it are not windowed (raise "
            "max_length to cover longer recordings)", full, length,
        )  # fmt: skip
    return Transformed(cuts, whole.present[row_of], index, whole.n_bad, row_of)


__all__ = ["check_options", "cut", "starts", "windows"]
