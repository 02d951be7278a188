"""Shared handling of cells that point at files (images, audio): a path relative to the table,
an absolute path, raw bytes, or a ``{"bytes", "path"}`` dict. Each distinct cell is decoded once;
unreadable cells raise a :class:`DataError` naming file, row and column, or are masked."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from polymodal.data.base import DataError, Transformed, where
from polymodal.data.io import is_missing

log = logging.getLogger("polymodal.data")


def cell_key(cell: Any) -> str | None:
    """A hashable identity for a cell (None if missing)."""
    if isinstance(cell, dict):
        raw = cell.get("bytes")
        cell = raw if raw is not None else cell.get("path")
    if isinstance(cell, (bytes, bytearray, memoryview)):
        data = bytes(cell)
        return "bytes:" + hashlib.sha1(data).hexdigest() if data else None
    if cell is None or is_missing(cell):
        return None
    return "path:" + str(cell)


def read_cell(cell: Any, base_dir: Path) -> tuple[bytes | Path, str]:
    """(bytes or resolved path, a short description for error messages)."""
    if isinstance(cell, dict):
        raw = cell.get("bytes")
        cell = raw if raw is not None else cell.get("path")
    if isinstance(cell, (bytes, bytearray, memoryview)):
        return bytes(cell), f"<{len(cell)} bytes>"
    path = Path(str(cell)).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    return path, str(path)


def decode_column(
    series: pd.Series,
    base_dir: Path,
    decode: Callable[[bytes | Path], torch.Tensor],
    empty: torch.Tensor,
    expected: str,
    source: str,
    bad_cells: str,
) -> Transformed:
    """Decode every distinct cell once; rows index into the stack of decoded values."""
    keys = [cell_key(c) for c in series.tolist()]
    unique: dict[str, int] = {}
    values: list[torch.Tensor] = [empty]  # slot 0: missing / unreadable
    n_bad = 0
    index = torch.zeros(len(keys), dtype=torch.long)
    for r, (row, cell, key) in enumerate(zip(series.index, series.tolist(), keys, strict=True)):
        if key is None:
            continue
        if key not in unique:
            target, desc = read_cell(cell, base_dir)
            try:
                values.append(decode(target))
                unique[key] = len(values) - 1
            except Exception as err:  # any decoder failure is a bad cell, reported with its place
                if bad_cells != "mask":
                    raise DataError(
                        f"{where(source, row, str(series.name))}: cannot read {desc}: expected {expected} ({err})"
                    ) from err
                unique[key] = 0
        index[r] = unique[key]
        n_bad += int(unique[key] == 0)
    if n_bad:
        log.warning("%s, column %r: %d unreadable cells masked", source, series.name, n_bad)
    return Transformed(torch.stack(values), index != 0, index=index, n_bad=n_bad)
