"""Shared handling of cells that point at files (images, audio): a path relative to the table,
an absolute path, raw bytes, or a ``{"bytes", "path"}`` dict. Each distinct cell is decoded once;
unreadable cells, paths outside the allowed folders (:mod:`polymodal.data.paths`) and decoded
values that are not finite (NaN / inf samples or pixels) raise a :class:`DataError` naming file,
row and column, or are masked."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from polymodal.data.base import DataError, Transformed, where
from polymodal.data.io import is_missing
from polymodal.data.paths import ANYWHERE, FileAccess, PathRefused, cell_path
from polymodal.utils.progress import progress

log = logging.getLogger("polymodal.data")
PROGRESS_ROWS = 2048  # columns with fewer rows decode without a progress report

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


def read_cell(
    cell: Any, base_dir: Path, access: FileAccess = ANYWHERE, cache: dict[str, str] | None = None
) -> tuple[bytes | Path, str]:
    """(bytes or resolved path, a short description for error messages); a path that ``access``
    does not allow raises :class:`PathRefused` (``cache``: see :meth:`FileAccess.check`)."""
    cell = _payload(cell)
    if isinstance(cell, (bytes, bytearray, memoryview)):
        return bytes(cell), describe(cell)
    return cell_path(str(cell).strip(), base_dir, access, cache), describe(cell)


def describe(cell: Any, limit: int = 200) -> str:
    """How error messages name a cell: its path (cut short) or its size in bytes."""
    cell = _payload(cell)
    if isinstance(cell, (bytes, bytearray, memoryview)):
        return f"<{len(cell)} bytes>"
    text = str(cell).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Absent(Exception):
    """Raised by a decoder for a readable file that holds nothing for this input (a clip
    without an audio track): the row's modality is missing, which is not a bad cell."""


class _Stack:
    """Decoded cells waiting for ``finish``, which runs on chunks of them at once (batched
    ``stft`` is ~20x faster than one call per clip) so the raw decodes never all sit in memory.
    Slots whose final values are not finite are zeroed and listed in ``broken``."""

    def __init__(self, empty: torch.Tensor, finish: Finisher | None, chunk: int) -> None:
        self.done: list[torch.Tensor] = [empty[None]]  # slot 0: missing / unreadable
        self.pending: list[torch.Tensor] = []
        self.finish, self.chunk, self.count = finish, chunk, 1
        self.broken: list[int] = []

    def add(self, raw: torch.Tensor) -> int:
        self.pending.append(raw)
        self.count += 1
        if len(self.pending) >= self.chunk:
            self.flush()
        return self.count - 1

    def flush(self) -> None:
        if self.pending:
            batch = torch.stack(self.pending)
            out = self.finish(batch) if self.finish is not None else batch
            bad = ~torch.isfinite(out.reshape(len(out), -1)).all(1)  # (k,)
            if bool(bad.any()):
                out = out.clone()
                out[bad] = self.done[0][0]
                first = self.count - len(self.pending)
                self.broken += [first + int(i) for i in torch.nonzero(bad).flatten()]
            self.done.append(out)
            self.pending = []

    def values(self) -> torch.Tensor:
        self.flush()
        return torch.cat(self.done)


def _decode(decode: Decoder, target: bytes | Path) -> torch.Tensor:
    raw = decode(target)
    if raw.is_floating_point() and not bool(torch.isfinite(raw).all()):
        raise ValueError("the decoded values include NaN or infinity")
    return raw


@dataclass
class _Column:
    """One column's decoding state: each distinct cell's slot in the stack (0: missing or bad),
    where each slot's cell first appeared (for errors raised later), rows' slots."""

    series: pd.Series
    base_dir: Path
    decode: Decoder
    expected: str
    source: str
    bad_cells: str
    access: FileAccess
    stack: _Stack
    slots: dict[str, int] = field(default_factory=dict)
    places: dict[int, str] = field(default_factory=dict)  # slot -> its cell's place and name
    folders: dict[str, str] = field(default_factory=dict)  # resolved folders of path cells
    absent: set[str] = field(default_factory=set)  # keys of cells that hold nothing (Absent)

    def slot(self, row: Any, cell: Any, key: str) -> int:
        """The slot of a cell: decoded once; a bad one is slot 0 (or a :class:`DataError`)."""
        if key not in self.slots:
            place, desc = where(self.source, row, str(self.series.name)), describe(cell)
            try:
                target, _ = read_cell(cell, self.base_dir, self.access, self.folders)
                self.slots[key] = self.stack.add(_decode(self.decode, target))
                self.places[self.slots[key]] = f"{place}: {desc}"
            except PathRefused as err:
                self.slots[key] = _bad(f"{place}: {err}", err, self.bad_cells)
            except Absent:  # a missing modality, not a bad cell
                self.slots[key] = 0
                self.absent.add(key)
            except Exception as err:  # any decoder failure is a bad cell, reported with its place
                message = f"{place}: cannot read {desc}: expected {self.expected} ({_brief(err)})"
                self.slots[key] = _bad(message, err, self.bad_cells)
        return self.slots[key]


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
    access: FileAccess = ANYWHERE,
) -> Transformed:
    """Decode every distinct cell once; rows index into the stack of decoded values.

    ``decode`` turns one file into a raw tensor; ``finish`` (optional) maps a stacked chunk of raw
    tensors (k, ...) to final values (k, ...); ``empty`` is the final value of slot 0, shared by
    missing and masked cells. ``access`` says which folders path cells may name. Large columns
    report progress (a bar, or log lines outside a terminal).
    """
    col = _Column(series, base_dir, decode, expected, source, bad_cells, access,
                  _Stack(empty, finish, chunk))  # fmt: skip
    index = torch.zeros(len(series), dtype=torch.long)
    filled = torch.zeros(len(series), dtype=torch.bool)
    shown = len(series) if len(series) >= PROGRESS_ROWS else 0  # small tables stay silent
    with progress(shown, f"{series.name}: reading files") as bar:
        for r, (row, cell) in enumerate(zip(series.index, series.tolist(), strict=True)):
            key = cell_key(cell, base_dir)
            if key is not None:
                index[r] = col.slot(row, cell, key)
                filled[r] = key not in col.absent
            if r % 64 == 63:
                bar.advance(64)
    values = col.stack.values()
    for slot in col.stack.broken:  # finite raw values that overflowed in ``finish``
        _bad(f"{col.places[slot]}: values out of range (NaN or infinity after preprocessing); "
             f"expected {expected}", None, bad_cells)  # fmt: skip
        index[index == slot] = 0
    n_bad = int((filled & (index == 0)).sum())
    if n_bad:
        log.warning("%s, column %r: %d unreadable cells masked", source, series.name, n_bad)
    return Transformed(values, index != 0, index=index, n_bad=n_bad)


def _bad(message: str, err: BaseException | None, bad_cells: str) -> int:
    """Slot 0 (masked) for a bad cell, or a :class:`DataError` with ``message``."""
    if bad_cells != "mask":
        raise DataError(message) from err
    return 0


def _brief(err: BaseException, limit: int = 300) -> str:
    text = " ".join(str(err).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return f"{type(err).__name__}: {text}"
