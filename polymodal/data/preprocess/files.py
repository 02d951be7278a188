"""Shared handling of cells that point at files (images, audio): a path relative to the table,
an absolute path, raw bytes, or a ``{"bytes", "path"}`` dict. Each distinct cell is decoded once;
unreadable cells raise a :class:`DataError` naming file, row and column, or are masked."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from polymodal.data.base import DataError, Transformed, where
from polymodal.data.io import is_missing

log = logging.getLogger("polymodal.data")

Decoder = Callable[[bytes | Path], torch.Tensor]
Finisher = Callable[[torch.Tensor], torch.Tensor]


def _payload(cell: Any) -> Any:
    """The part of a cell that identifies the file: its bytes, else its path."""
    if isinstance(cell, dict):
        raw = cell.get("bytes")
        return raw if raw is not None else cell.get("path")
    return cell


def cell_key(cell: Any, base_dir: Path) -> str | None:
    """A hashable identity for a cell (None if missing): equal bytes, or paths naming the same
    file (relative or absolute), decode once."""
    cell = _payload(cell)
    if isinstance(cell, (bytes, bytearray, memoryview)):
        data = bytes(cell)
        return "bytes:" + hashlib.sha1(data).hexdigest() if data else None
    if cell is None or is_missing(cell):
        return None
    path = os.path.expanduser(str(cell).strip())
    return "path:" + os.path.normpath(os.path.join(base_dir, path))  # join keeps absolute paths


def read_cell(cell: Any, base_dir: Path) -> tuple[bytes | Path, str]:
    """(bytes or resolved path, a short description for error messages)."""
    cell = _payload(cell)
    if isinstance(cell, (bytes, bytearray, memoryview)):
        return bytes(cell), f"<{len(cell)} bytes>"
    path = Path(str(cell).strip()).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    return path, str(path)


class _Stack:
    """Decoded cells waiting for ``finish``, which runs on chunks of them at once (batched
    ``stft`` is ~20x faster than one call per clip) so the raw decodes never all sit in memory."""

    def __init__(self, empty: torch.Tensor, finish: Finisher | None, chunk: int) -> None:
        self.done: list[torch.Tensor] = [empty[None]]  # slot 0: missing / unreadable
        self.pending: list[torch.Tensor] = []
        self.finish, self.chunk, self.count = finish, chunk, 1

    def add(self, raw: torch.Tensor) -> int:
        self.pending.append(raw)
        self.count += 1
        if len(self.pending) >= self.chunk:
            self.flush()
        return self.count - 1

    def flush(self) -> None:
        if self.pending:
            batch = torch.stack(self.pending)
            self.done.append(self.finish(batch) if self.finish is not None else batch)
            self.pending = []

    def values(self) -> torch.Tensor:
        self.flush()
        return torch.cat(self.done)


def decode_column(
    series: pd.Series,
    base_dir: Path,
    decode: Decoder,
    empty: torch.Tensor,
    expected: str,
    source: str,
    bad_cells: str,
    finish: Finisher | None = None,
    chunk: int = 256,
) -> Transformed:
    """Decode every distinct cell once; rows index into the stack of decoded values.

    ``decode`` turns one file into a raw tensor; ``finish`` (optional) maps a stacked chunk of raw
    tensors (k, ...) to final values (k, ...); ``empty`` is the final value of slot 0, shared by
    missing and masked cells.
    """
    stack = _Stack(empty, finish, chunk)
    slots: dict[str, int] = {}
    index = torch.zeros(len(series), dtype=torch.long)
    n_bad = 0
    for r, (row, cell) in enumerate(zip(series.index, series.tolist(), strict=True)):
        key = cell_key(cell, base_dir)
        if key is None:
            continue
        if key not in slots:
            target, desc = read_cell(cell, base_dir)
            try:
                slots[key] = stack.add(decode(target))
            except Exception as err:  # any decoder failure is a bad cell, reported with its place
                if bad_cells != "mask":
                    raise DataError(
                        f"{where(source, row, str(series.name))}: cannot read {desc}: "
                        f"expected {expected} ({type(err).__name__}: {err})"
                    ) from err
                slots[key] = 0
        index[r] = slots[key]
        n_bad += int(slots[key] == 0)
    if n_bad:
        log.warning("%s, column %r: %d unreadable cells masked", source, series.name, n_bad)
    return Transformed(stack.values(), index != 0, index=index, n_bad=n_bad)
