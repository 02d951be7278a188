"""Time-series cells -> (N, T, C + 1) float tensors: C standardised channels, then one channel
that is the per-step mask (1: a real step; 0: padding or a missing step). One tensor carries
values and mask through batching, augmentation, the feature cache, ONNX export (its time axis is
dynamic, like a token sequence's) and serving; encoders split it (``x[..., :-1]``, ``x[..., -1]``).

A cell is a file (CSV/TSV with a header row, ``.npy``, Parquet: one column per channel; paths
resolved and checked like image and audio cells) or inline (a list of time steps, each a list of
channel values, a flat list for one channel, numpy arrays as pandas reads Parquet, or JSON text of
such a list). ``channels`` selects and orders channels by name in file cells.

- Standardisation: per-channel mean/std over every step of the training rows (mergeable moments,
  so a streamed fit gives the same numbers).
- Length: a series longer than ``max_length`` keeps ``max_length`` steps (``crop``: its centre by
  default, or its start / end), at training time as at prediction time (tensors are built once);
  with ``augment`` a random crop picks a window inside those steps. ``resample`` instead
  interpolates every series to exactly that many steps. Shorter series are zero-padded, masked.
- Gaps: a step whose channels are all NaN (an empty CSV field, null) is masked; a NaN beside real
  values is filled with the channel's mean (0). A series with no real step (empty, all NaN) is a
  missing modality for its row, as an empty text is.
- Bad cells (an error naming file, row and column, or masked and counted with
  ``data.bad_cells: mask``): unreadable or refused files, ragged steps, non-numbers, infinities,
  a channel count (or channel names) other than training's, more than ``max_steps`` steps.
- Windows: with ``window`` (steps) each series (its first ``max_length`` steps as above) is cut
  into windows of ``window`` steps, ``stride`` apart (default: ``window``, no overlap; a tail
  shorter than a window is left out, a series shorter than one window is one padded window;
  windows of gaps only are dropped). The transform returns one entry per window with the row it
  belongs to (``Transformed.row_of``): windows inherit the row's other inputs and its label in
  training, and a row's prediction averages its windows' (see
  :mod:`polymodal.evaluation.windows`). A row without a series is one masked window.
- Mirror: ``mirror`` negates some channels on the rows whose other column holds a value (a watch
  worn on the left wrist; see :mod:`polymodal.data.preprocess.series_mirror`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from polymodal.data.base import DataError, Preprocessor, Transformed, where
from polymodal.data.paths import ANYWHERE, FileAccess
from polymodal.data.preprocess import series_mirror as M
from polymodal.data.preprocess import series_windows as W
from polymodal.data.preprocess.files import decode_column, read_cell
from polymodal.data.preprocess.series_io import (
    Series,
    distinct_cells,
    is_inline,
    parse_inline,
    read_file,
    training_channels,
)
from polymodal.data.stats import Moments, Sample, Stats, merge
from polymodal.registry import register

log = logging.getLogger("polymodal.data")

EXPECTED = "a series file (CSV with a header row, .npy or Parquet; one column per channel)"
CROPS = ("center", "start", "end")


@register("preprocessor", "timeseries")
class SeriesPreprocessor(Preprocessor):
    modality = "timeseries"
    sequence = True  # axis 1 (time) varies in length from table to table

    def __init__(
        self,
        max_length: int = 512,  # steps kept per series (longer: cropped; shorter: padded)
        crop: str = "center",  # which max_length steps a longer series keeps: center|start|end
        resample: int | None = None,  # interpolate every series to this many steps instead
        channels: list[str] | None = None,  # file cells: these columns, in this order
        max_steps: int = 100_000,  # a longer series is a bad cell (not a recording to crop)
        max_file_mb: float = 256.0,  # a larger series file is a bad cell (nothing read)
        augment: bool = False,  # train time: random crop, scaling, jitter, time masking
        jitter: float = 0.03,  # std of Gaussian noise added to every real step (std units)
        scaling: float = 0.1,  # std of a random per-channel gain around 1
        time_mask: float = 0.1,  # longest masked band, as a share of the series' steps
        crop_min: float = 0.8,  # random crop keeps at least this share of the steps
        reference_rows: int = 0,  # training series handed to data-fitted encoders (minirocket)
        window: int | None = None,  # cut each series into windows of this many steps
        stride: int | None = None,  # steps between window starts (default: window)
        mirror: dict[str, Any] | None = None,  # {column, value, negate}: see series_mirror
    ) -> None:
        _check_options(max_length, crop, resample, channels, time_mask, crop_min)
        W.check_options(window, stride, max_length, resample)
        M.check(mirror)
        self.mirror = dict(mirror) if mirror is not None else None
        self.window, self.stride = window, stride
        self.max_length, self.crop, self.resample = max_length, crop, resample
        self.channels = list(channels) if channels is not None else None
        self.max_steps, self.max_file_mb = max_steps, max_file_mb
        self.augment_enabled, self.jitter, self.scaling = augment, jitter, scaling
        self.time_mask, self.crop_min, self.reference_rows = time_mask, crop_min, reference_rows
        self.n_channels: int | None = None  # fitted
        self.names: list[str] | None = None  # channel names the training files had
        self.mean, self.std = np.zeros(0), np.ones(0)
        self.reference_: list[list[list[float]]] = []  # standardised sample (not saved)

    def options(self) -> dict[str, Any]:
        # the `augment` option is stored as `augment_enabled` (the name `augment` is the method)
        keys = ("max_length", "crop", "resample", "channels", "max_steps", "max_file_mb",
                "jitter", "scaling", "time_mask", "crop_min", "reference_rows", "window",
                "stride", "mirror")  # fmt: skip
        return {**{k: getattr(self, k) for k in keys}, "augment": self.augment_enabled}

    @property
    def length(self) -> int:
        """Steps of the longest tensor a series becomes (before it is cut into windows)."""
        return self.resample or self.max_length

    @property
    def windowed(self) -> bool:
        """Whether rows become several entries (windows): the dataset then repeats the rest."""
        return self.window is not None

    def starts(self, real: np.ndarray) -> list[int]:
        """Where the windows of a series whose real steps are ``real`` (T,) start."""
        assert self.window is not None
        return W.starts(real, self.window, self.stride or self.window)

    def cut(self, x: torch.Tensor) -> torch.Tensor:
        """One whole series tensor (T, C + 1) -> its windows (k, window, C + 1), those the
        transform gives (differentiable: explanations attribute through it)."""
        assert self.window is not None
        return W.cut(x, self.starts((x[:, -1] > 0).numpy()), self.window)

    def channel_names(self) -> list[str]:
        """The value channels of its tensors, in order (the last channel is the step mask)."""
        names = self.channels or self.names
        return list(names) if names else [f"channel {i}" for i in range(self.n_channels or 0)]

    def whole(self) -> SeriesPreprocessor:
        """This fitted preprocessor without windows: whole series (for explanations)."""
        other = SeriesPreprocessor(**{**self.options(), "window": None, "stride": None})
        other.load_fitted_state(self.fitted_state())
        return other

    # -- one cell ----------------------------------------------------------------------------
    def read(self, cell: Any, base_dir: Path, access: FileAccess = ANYWHERE) -> Series:
        """The raw series in an inline or file cell (``ValueError`` / ``OSError`` if unusable)."""
        if is_inline(cell):
            return parse_inline(cell, self.max_steps)
        target, _ = read_cell(cell, base_dir, access)
        return self.read_target(target)

    def read_target(self, target: bytes | Path) -> Series:
        return read_file(target, self.max_steps, int(self.max_file_mb * 2**20))

    def conform(self, series: Series, width: int | None) -> np.ndarray:
        """(T, C) in the channel order of training: ``channels`` picked by name, files whose
        header lists the training channels in another order reordered, the count checked."""
        values, names = series
        if not len(values):  # an empty series: a missing modality, whatever its width
            return np.zeros((0, width if width is not None else values.shape[1]))
        if names is not None and (self.channels or self.names):
            wanted = self.channels or self.names or []
            if names != wanted:
                missing = [c for c in wanted if c not in names]
                if missing or (not self.channels and len(names) != len(wanted)):
                    raise ValueError(
                        f"channels {names}; expected {wanted}"
                        + (
                            " (as in training)"
                            if not self.channels
                            else " (preprocessing channels)"
                        )
                    )
                values = values[:, [names.index(c) for c in wanted]]
        if width is not None and values.shape[1] != width:
            named = f" {self.channels or self.names}" if (self.channels or self.names) else ""
            raise ValueError(f"{values.shape[1]} channel(s) per step; expected {width}{named}")
        bad = ~(np.isfinite(values) | np.isnan(values))
        if bad.any():
            t, c = np.argwhere(bad)[0]
            raise ValueError(
                f"step {t}, channel {c}: {values[t, c]}; expected finite numbers (NaN or an "
                "empty field marks a gap)"
            )
        return values

    def tensor(self, values: np.ndarray) -> torch.Tensor:
        """A conformed (T, C) series -> (length, C + 1): standardised, cropped or resampled,
        zero-padded, the last channel its step mask."""
        c = values.shape[1]
        x, ok = self._shape((values - self.mean) / self.std)
        out = np.zeros((self.length, c + 1), dtype=np.float32)
        out[: len(x), :c] = np.nan_to_num(x, nan=0.0)
        out[: len(x), c] = ok
        if not np.isfinite(out).all():
            raise ValueError("values out of range (infinite after standardisation)")
        return torch.from_numpy(out)

    def _shape(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(T, C) with NaN gaps -> (L, C) and the (L,) step mask, L <= ``length``."""
        ok = ~np.isnan(x).all(1)
        if self.resample:
            if not ok.any():
                return x[:0], ok[:0]
            t = np.flatnonzero(ok)
            grid = np.linspace(0, len(x) - 1, self.resample)
            filled = np.nan_to_num(x, nan=0.0)
            out = np.stack([np.interp(grid, t, filled[t, j]) for j in range(x.shape[1])], 1)
            return out, np.ones(self.resample, dtype=bool)
        if len(x) > self.max_length:
            spare = len(x) - self.max_length
            start = {"start": 0, "end": spare, "center": spare // 2}[self.crop]
            x, ok = x[start : start + self.max_length], ok[start : start + self.max_length]
        return x, ok

    def decode(self, target: bytes | Path) -> torch.Tensor:
        """One series file -> its tensor (what :func:`decode_column` calls per distinct file)."""
        return self.tensor(self.conform(self.read_target(target), self.n_channels))

    def validate_cell(self, value: Any) -> Any:
        """A request's inline cell (list of steps), checked before anything runs: the shape
        training had (``ValueError`` saying what is wrong, which a server answers with a 422);
        other cells (a file's bytes or path, null) pass unchanged."""
        if isinstance(value, list):
            self.conform(parse_inline(value, self.max_steps), self.n_channels)
        return value

    # -- fit ---------------------------------------------------------------------------------
    def partial_fit(
        self,
        frame: pd.DataFrame,
        columns: list[str],
        base_dir: Path,
        stats: Stats | None = None,
        source: str = "<train>",
        access: FileAccess = ANYWHERE,
    ) -> Stats:
        """Row count and per-channel moments (each row weighted once) of the readable series,
        grouped by their header (files) or channel count; a bottom-k sample of series for
        ``reference_rows``. Bad cells are skipped here: the transform reports them by row."""
        part: Stats = {"rows": len(frame), "groups": {}}
        if self.reference_rows:
            part["reference"] = Sample(self.reference_rows, {})
        mirrored = M.rows(self.mirror, frame, source)
        groups = [(False, frame[columns[0]][~mirrored]), (True, frame[columns[0]][mirrored])]
        pairs = [(f, cell) for f, cells in groups for cell in distinct_cells(cells, base_dir)]
        for flip, (cell, count) in pairs:
            try:
                series = self.read(cell, base_dir, access)
                values = self.conform(series, None)
            except Exception:  # a bad cell: the transform reports it, with its row
                continue
            if flip and self.mirror is not None:
                names = self.channels or series.names
                try:
                    negate = M.channels(self.mirror, names, values.shape[1])
                except ValueError as err:
                    raise DataError(f"{source}, column {columns[0]!r}: {err}") from None
                values = M.flip_raw(values, negate)
            if not len(values) or np.isnan(values).all():
                continue  # an empty series: a missing modality, nothing to learn
            m = Moments.of(values)
            named = series.names is not None and not self.channels
            key = json.dumps(series.names) if named else str(values.shape[1])
            weighted = {"rows": count, "moments": Moments(m.count * count, m.mean, m.m2 * count)}
            part["groups"][key] = merge(part["groups"].get(key), weighted)
            if self.reference_rows:
                _offer(part["reference"], values, self)
        return dict(merge(stats, part))

    def finish_fit(self, stats: Stats, columns: list[str]) -> SeriesPreprocessor:
        """The channels most training rows have (or ``channels``): their moments and names."""
        groups: dict[str, Stats] = stats.get("groups") or {}
        width, names = training_channels(groups, self.channels)
        moments = None
        for key, group in groups.items():
            got = json.loads(key) if key.startswith("[") else None
            if got is None and int(key) == width:
                moments = merge(moments, group["moments"])
            elif got is not None and names is not None and sorted(got) == sorted(names):
                order = [got.index(n) for n in names]  # a header in another order
                m = group["moments"]
                moments = merge(moments, Moments(m.count[order], m.mean[order], m.m2[order]))
        if moments is None:
            raise DataError(
                f"<train>, column {columns[0]!r}: none of the {stats.get('rows', 0)} training rows "
                "holds a readable, non-empty series"
                + (f" with the channels {self.channels}" if self.channels else "")
                + "; expected some (a list of time steps, or a CSV / .npy / Parquet file)"
            )
        std = np.sqrt(moments.m2 / np.maximum(moments.count - 1, 1))
        std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
        self.load_fitted_state(
            {"n_channels": width, "names": names, "mean": moments.mean.tolist(),
             "std": std.tolist()}
        )  # fmt: skip
        sample: Sample | None = stats.get("reference")
        self.reference_ = []
        for _, payload in sorted((sample.items if sample else {}).items()):
            raw = np.asarray(payload, dtype=np.float64)
            if raw.ndim == 2 and raw.shape[1] == width and len(raw):
                self.reference_.append(np.round((raw - self.mean) / self.std, 4).tolist())
        return self

    # -- transform ---------------------------------------------------------------------------
    def _empty(self) -> torch.Tensor:
        return torch.zeros(self.length, (self.n_channels or 0) + 1)

    def transform(
        self,
        frame: pd.DataFrame,
        columns: list[str],
        base_dir: Path,
        source: str = "<table>",
        bad_cells: str = "raise",
        access: FileAccess = ANYWHERE,
    ) -> Transformed:
        if self.n_channels is None:
            raise DataError(f"{source}: the timeseries preprocessor is used before it was fitted")
        cells = frame[columns[0]]
        inline = np.fromiter((is_inline(c) for c in cells.tolist()), bool, count=len(cells))
        files = decode_column(
            cells[~inline], base_dir, self.decode, self._empty(), EXPECTED, source, bad_cells,
            access=access,
        )  # fmt: skip
        assert files.index is not None
        own, own_index, own_bad = self._inline(cells[inline], source, bad_cells)
        values = torch.cat([files.values, *own]) if own else files.values
        index = torch.zeros(len(cells), dtype=torch.long)
        index[torch.from_numpy(np.flatnonzero(~inline))] = files.index
        shifted = torch.where(own_index > 0, own_index - 1 + len(files.values), 0)
        index[torch.from_numpy(np.flatnonzero(inline))] = shifted
        if self.mirror is not None:
            negate = M.channels(self.mirror, self.channels or self.names, self.n_channels)
            shift = torch.from_numpy(2 * self.mean[negate] / self.std[negate]).float()
            mirrored = M.rows(self.mirror, frame, source)
            values, index = M.flip_slots(values, index, mirrored, negate, shift)
        real = values[:, :, -1] > 0  # (U, length) real steps
        steps = int(real.any(0).nonzero().max()) + 1 if bool(real.any()) else 1
        values = values[:, :steps].contiguous()  # no column of padding in every row
        filled = real.any(1)[index]
        empty = int(((index != 0) & ~filled).sum())
        if empty:
            log.info("%s, column %r: %d empty series read as missing", source, cells.name, empty)
        present = (index != 0) & filled
        out = Transformed(values, present, index=index, n_bad=files.n_bad + own_bad)
        if not self.window:
            return out
        return W.windows(out, self.starts, self.window, self.length)

    def _inline(
        self, cells: pd.Series, source: str, bad_cells: str
    ) -> tuple[list[torch.Tensor], torch.Tensor, int]:
        """Inline cells -> (one stacked tensor per distinct series, or none; each row's slot,
        1-based, 0 for a masked bad cell; how many were masked)."""
        slots: dict[bytes, int] = {}
        stack: list[torch.Tensor] = []
        index = torch.zeros(len(cells), dtype=torch.long)
        n_bad = 0
        for r, (row, cell) in enumerate(zip(cells.index, cells.tolist(), strict=True)):
            try:
                values = self.conform(parse_inline(cell, self.max_steps), self.n_channels)
                key = _digest(values)
                if key not in slots:
                    stack.append(self.tensor(values))
                    slots[key] = len(stack)
                index[r] = slots[key]
            except ValueError as err:
                message = f"{where(source, row, str(cells.name))}: cannot read the series: {err}"
                if bad_cells != "mask":
                    raise DataError(message) from None
                n_bad += 1
        if n_bad:
            log.warning("%s, column %r: %d unreadable cells masked", source, cells.name, n_bad)
        return ([torch.stack(stack)] if stack else []), index, n_bad

    # -- augmentation ------------------------------------------------------------------------
    @property
    def augments(self) -> bool:
        return bool(self.augment_enabled)

    def augment(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A batch (B, T, C + 1): random crop (a window of >= ``crop_min`` of each series' steps,
        moved to the start), per-channel scaling, jitter on real steps, and one masked band of
        at most ``time_mask`` of the steps. Padding stays zero; missing rows stay empty."""
        if not self.augment_enabled:
            return x
        b, t, c1 = x.shape

        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=generator).to(x.device)

        def randn(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=generator).to(x.device)

        pos = torch.arange(t, device=x.device)
        real = x[..., -1] > 0  # (B, T)
        n = torch.where(real, pos + 1, 0).amax(1)  # (B,) steps up to the last real one
        keep = torch.ceil(n * (self.crop_min + (1 - self.crop_min) * rand(b))).long()
        start = (rand(b) * (n - keep + 1)).long()
        idx = (pos[None, :] + start[:, None]).clamp(max=t - 1)  # (B, T)
        x = x.gather(1, idx[..., None].expand(b, t, c1))
        inside = pos[None, :] < keep[:, None]  # (B, T)
        width = (rand(b) * self.time_mask * keep).long()
        band_start = (rand(b) * (keep - width + 1)).long()
        band = (pos[None, :] >= band_start[:, None]) & (
            pos[None, :] < (band_start + width)[:, None]
        )
        mask = x[..., -1] * (inside & ~band)  # (B, T)
        values = x[..., :-1] * (1 + self.scaling * randn(b, 1, c1 - 1))
        values = values + self.jitter * randn(b, t, c1 - 1)
        values = values * mask[..., None]
        return torch.cat([values, mask[..., None]], dim=-1)

    def noise(self, x: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
        """(N, T, C + 1) with Gaussian noise of ``level`` standard deviations (the channels are
        standardised) on the real steps; the step mask and padding stay as they are (robustness
        checks call this instead of perturbing every float)."""
        real = x[..., -1:]
        noise = torch.randn(x[..., :-1].shape, generator=generator) * level * real
        return torch.cat([x[..., :-1] + noise, real], dim=-1)

    # -- facts and state ---------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        length = self.window or self.length  # what the encoder sees
        spec: dict[str, Any] = {"in_channels": self.n_channels, "series_length": length}
        if self.reference_rows:
            spec["series_reference"] = self.reference_
        return spec

    def fitted_state(self) -> dict[str, Any]:
        return {"n_channels": self.n_channels, "names": self.names,
                "mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}  # fmt: skip

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        self.n_channels = None if state["n_channels"] is None else int(state["n_channels"])
        self.names = list(state["names"]) if state.get("names") else None
        self.mean = np.asarray(state["mean"], dtype=np.float64)
        self.std = np.asarray(state["std"], dtype=np.float64)


def _check_options(
    max_length: int,
    crop: str,
    resample: int | None,
    channels: list[str] | None,
    time_mask: float,
    crop_min: float,
) -> None:
    where = "timeseries preprocessing"
    if max_length < 1:
        raise ValueError(f"{where}: max_length must be at least 1, got {max_length}")
    if crop not in CROPS:
        raise ValueError(f"{where}: crop must be one of {', '.join(CROPS)}, got {crop!r}")
    if resample is not None and resample < 2:
        raise ValueError(f"{where}: resample must be at least 2 steps (or null), got {resample}")
    if channels is not None and (
        not channels
        or not all(isinstance(c, str) for c in channels)
        or len(set(channels)) != len(channels)
    ):
        raise ValueError(f"{where}: channels must be distinct column names, got {channels!r}")
    if not 0 <= time_mask < 1 or not 0 < crop_min <= 1:
        raise ValueError(
            f"{where}: time_mask must be in [0, 1) and crop_min in (0, 1], got {time_mask} and "
            f"{crop_min}"
        )


def _digest(values: np.ndarray) -> bytes:
    head = str(values.shape).encode()
    return hashlib.blake2b(head + np.ascontiguousarray(values).tobytes(), digest_size=16).digest()


def _offer(sample: Sample, values: np.ndarray, pre: SeriesPreprocessor) -> None:
    """Put a series into the bottom-k ``sample`` if its digest is small enough: its crop (or
    resampling) of raw values, gaps as None, as the payload; when windowed, one of its windows
    (which one follows from the digest, so a streamed fit picks the same)."""
    key = _digest(values).hex()
    if len(sample.items) >= sample.size and key >= max(sample.items):
        return
    x, ok = pre._shape(values)
    if pre.window:
        starts = pre.starts(ok)
        at = starts[int(key[:8], 16) % len(starts)]
        x, ok = x[at : at + pre.window], ok[at : at + pre.window]
    payload = [[None if math.isnan(v) else v for v in step] for step in x[ok].tolist()]
    sample.items[key] = payload
    if len(sample.items) > sample.size:
        del sample.items[max(sample.items)]


__all__ = ["SeriesPreprocessor"]
