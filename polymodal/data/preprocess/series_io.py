"""Reading one time series: an inline cell (a list of steps, a numpy array, JSON text of a list)
or a file (CSV / TSV with a header row, ``.npy``, Parquet; one column per channel) -> a float64
array (time, channels) with NaN for missing values, and the channel names when the file has a
header. Every refusal is a ``ValueError`` saying what was wrong; the preprocessor adds the file,
row and column (paths are resolved and checked by :mod:`polymodal.data.preprocess.files`)."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from polymodal.data.preprocess.files import cell_key
from polymodal.data.stats import Stats

MAX_CHANNELS = 4096  # a wider "series" is a table, not a recording
NPY_MAGIC, PARQUET_MAGIC = b"\x93NUMPY", b"PAR1"
SEQUENCES = (list, tuple, np.ndarray)


class Series(NamedTuple):
    values: np.ndarray  # (T, C) float64; NaN marks a missing value
    names: list[str] | None  # channel names from a file's header; None for inline / .npy cells


def is_inline(cell: Any) -> bool:
    """Cells that hold the series itself: lists, tuples, numpy arrays, or JSON text of a list
    (how a CSV table can carry one); anything else is a file cell or missing."""
    if isinstance(cell, SEQUENCES):
        return True
    return isinstance(cell, str) and cell.lstrip().startswith("[")


def parse_inline(cell: Any, max_steps: int) -> Series:
    """A list of time steps, each a list of channel values (a flat list is one channel)."""
    if isinstance(cell, str):
        try:
            cell = json.loads(cell)
        except ValueError as err:
            raise ValueError(f"text starting with '[' that is not JSON ({err})") from None
        if not isinstance(cell, list):
            raise ValueError(f"JSON {type(cell).__name__}; expected a list of time steps")
    if isinstance(cell, np.ndarray) and cell.dtype != object:
        arr = cell
    else:
        steps = list(cell)
        _check_steps(len(steps), max_steps)
        nested = [isinstance(s, SEQUENCES) for s in steps]
        if any(nested) and not all(nested):
            i = nested.index(not nested[0])
            raise ValueError(
                f"step 0 is {'a list' if nested[0] else 'a number'} but step {i} is not; expected "
                "every step to be a list of channel values (or every step one number)"
            )
        if steps and nested[0]:
            widths = [np.size(s) for s in steps]
            odd = next((i for i, w in enumerate(widths) if w != widths[0]), None)
            if odd is not None:
                raise ValueError(
                    f"a ragged series: step {odd} has {widths[odd]} values, step 0 has "
                    f"{widths[0]}; expected the same channels at every step"
                )
            if all(isinstance(s, np.ndarray) and s.dtype.kind in "iuf" for s in steps):
                arr = np.stack(steps)  # pandas' reading of a Parquet list-of-lists column
                return Series(_as_steps(arr, max_steps), None)
            steps = [list(s) for s in steps]
        arr = _numbers(steps)
    return Series(_as_steps(arr, max_steps), None)


def _numbers(obj: Any) -> np.ndarray:
    """``obj`` as a float64 array; None is NaN; strings, booleans and other objects are refused,
    naming where the first one is."""
    try:
        arr = np.asarray(obj)
    except ValueError as err:  # nested lists of different depths
        raise ValueError(f"a ragged series ({err})") from None
    if arr.dtype.kind in "iuf":
        return arr.astype(np.float64)
    arr = np.asarray(obj, dtype=object)  # numbers beside strings became strings: look again
    flat = arr.reshape(-1) if arr.ndim else arr.reshape(1)
    width = arr.shape[1] if arr.ndim == 2 else 1
    out = np.empty(len(flat), dtype=np.float64)
    for i, v in enumerate(flat):
        if v is None:
            out[i] = np.nan
        elif isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
            out[i] = float(v)
        else:
            raise ValueError(
                f"step {i // width}, channel {i % width}: {str(v)[:40]!r} "
                f"({type(v).__name__}) is not a number; expected numbers (or null for a gap)"
            )
    return out.reshape(arr.shape)


def _as_steps(arr: np.ndarray, max_steps: int) -> np.ndarray:
    """(T,) -> (T, 1); (T, C) kept; anything else refused."""
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(
            f"an array of shape {tuple(arr.shape)}; expected (time steps, channels) or a flat list"
        )
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"values of type {arr.dtype}; expected numbers")
    _check_steps(arr.shape[0], max_steps)
    if arr.shape[1] > MAX_CHANNELS:
        raise ValueError(f"{arr.shape[1]} channels; expected at most {MAX_CHANNELS}")
    return np.asarray(arr, dtype=np.float64)


def _check_steps(steps: int, max_steps: int) -> None:
    if steps > max_steps:
        raise ValueError(
            f"{steps:,} time steps; expected at most {max_steps:,} (preprocessing max_steps)"
        )


# -- files ------------------------------------------------------------------------------------
def read_file(target: bytes | Path, max_steps: int, max_bytes: int) -> Series:
    """A series file, by its magic number (bytes) or its suffix (paths): ``.npy``, Parquet,
    ``.tsv``, else CSV. Files over ``max_bytes`` are refused before anything is read."""
    size = len(target) if isinstance(target, bytes) else target.stat().st_size
    if size > max_bytes:
        raise ValueError(
            f"a file of {size:,} bytes; expected at most {max_bytes:,} (preprocessing max_file_mb)"
        )
    if isinstance(target, bytes):
        kind = {NPY_MAGIC[:4]: "npy", PARQUET_MAGIC: "parquet"}.get(target[:4], "csv")
    else:
        suffix = target.suffix.lower()
        kind = {".npy": "npy", ".parquet": "parquet", ".pq": "parquet", ".tsv": "tsv"}.get(
            suffix, "csv"
        )
    if kind == "npy":
        return _read_npy(target, max_steps)
    if kind == "parquet":
        return _read_parquet(target, max_steps)
    return _read_csv(target, max_steps, "\t" if kind == "tsv" else ",")


def _read_npy(target: bytes | Path, max_steps: int) -> Series:
    """A float/int array (time,) or (time, channels); shape checked (memory-mapped) first."""
    if isinstance(target, bytes):
        arr = np.load(io.BytesIO(target), allow_pickle=False)
    else:
        arr = np.load(target, mmap_mode="r", allow_pickle=False)
    if not isinstance(arr, np.ndarray):  # an .npz archive
        raise ValueError("an .npz archive; expected one .npy array (time steps, channels)")
    return Series(_as_steps(arr, max_steps), None)


def _read_parquet(target: bytes | Path, max_steps: int) -> Series:
    """One numeric column per channel; the row count is checked from the footer first."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(io.BytesIO(target) if isinstance(target, bytes) else target) as pf:
        _check_steps(pf.metadata.num_rows, max_steps)
        if pf.metadata.num_columns > MAX_CHANNELS:
            raise ValueError(
                f"{pf.metadata.num_columns} columns; expected at most {MAX_CHANNELS} channels"
            )
        frame = pf.read().to_pandas()
    for name in frame.columns:
        dtype = frame[name].dtype
        if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
            raise ValueError(
                f"column {str(name)!r} holds {dtype}; expected numbers in every column"
            )
    values = frame.to_numpy(dtype=np.float64, na_value=np.nan).reshape(len(frame), -1)
    return Series(values, [str(c) for c in frame.columns])


def _read_csv(target: bytes | Path, max_steps: int, sep: str) -> Series:
    """A header row naming the channels, then one line per step; an empty field is a missing
    value, a line with another number of fields than the header is refused (a ragged CSV)."""
    if isinstance(target, bytes):
        return _parse_csv(io.StringIO(target.decode("utf-8-sig"), newline=""), max_steps, sep)
    with open(target, encoding="utf-8-sig", newline="") as fh:
        return _parse_csv(fh, max_steps, sep)


def _parse_csv(fh: Any, max_steps: int, sep: str) -> Series:
    reader = csv.reader(fh, delimiter=sep)
    header = next(reader, None)
    if not header:
        raise ValueError("an empty file; expected a header row naming the channels")
    names = [h.strip() for h in header]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"the header names {twice} twice; expected one column per channel")
    rows: list[list[str]] = []
    for line, rec in enumerate(reader, start=2):
        if not rec:  # a blank line
            continue
        if len(rec) != len(names):
            raise ValueError(
                f"a ragged CSV: line {line} has {len(rec)} fields, the header {len(names)}"
            )
        rows.append(rec)
        _check_steps(len(rows), max_steps)
    flat = [v.strip() for rec in rows for v in rec]
    try:
        values = np.array([float(v) if v else np.nan for v in flat], dtype=np.float64)
    except ValueError:
        i = next(i for i, v in enumerate(flat) if v and not _is_float(v))
        line, col = i // len(names) + 2, names[i % len(names)]
        raise ValueError(
            f"line {line}, column {col!r}: {flat[i][:40]!r} is not a number; expected numbers "
            "(an empty field for a gap)"
        ) from None
    return Series(values.reshape(len(rows), len(names)), names)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def training_channels(
    groups: dict[str, Stats], channels: list[str] | None
) -> tuple[int, list[str] | None]:
    """(channel count, names) of training: ``channels`` if set; else the count most rows have
    and the header most of those files share (None when no file has a header)."""
    if channels:
        return len(channels), list(channels)
    rows: Counter[int] = Counter()
    headers: Counter[str] = Counter()
    for key, group in groups.items():
        named = key.startswith("[")
        rows[len(json.loads(key)) if named else int(key)] += group["rows"]
        if named:
            headers[key] += group["rows"]
    if not rows:
        return 0, None
    width = max(rows, key=lambda w: (rows[w], -w))
    best = [json.loads(h) for h, _ in headers.most_common() if len(json.loads(h)) == width]
    return width, (best[0] if best else None)


def distinct_cells(cells: pd.Series, base_dir: Path) -> list[tuple[Any, int]]:
    """(cell, rows holding it) for each distinct filled cell: files by path, inline by value."""
    groups: dict[Any, list[Any]] = {}
    for cell in cells.tolist():
        if is_inline(cell):
            key: Any = ("inline", id(cell)) if not isinstance(cell, str) else ("json", cell)
        else:
            key = cell_key(cell, base_dir)
            if key is None:
                continue
        groups.setdefault(key, [cell, 0])[1] += 1
    return [(cell, count) for cell, count in groups.values()]


__all__ = [
    "MAX_CHANNELS",
    "Series",
    "distinct_cells",
    "is_inline",
    "parse_inline",
    "read_file",
    "training_channels",
]
