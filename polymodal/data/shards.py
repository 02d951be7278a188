"""Which rows of a streamed table each process and DataLoader worker reads, pure functions.

The rows of one part (train / val / test) form a sequence: the table's blocks in an order
permuted per epoch (seeded), each contributing its selected rows. Rank ``r`` of ``world`` takes a
contiguous slice of that sequence and its workers split the slice again, so every row is read
by exactly one (rank, worker) shard; a training slice drops the last ``rows % world`` rows of the
epoch's order so that every rank takes the same number of steps (DDP needs that), an evaluation
slice keeps every row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa

from polymodal.data.base import DataError, where
from polymodal.data.source import Block, TableSource
from polymodal.data.split import SPLIT_NAMES

PARTS = ("train", "val", "test")


class RowSplit(Protocol):
    """Selects the rows of one part of a table."""

    def counts(self, source: TableSource) -> list[int]:
        """Selected rows per block."""
        ...

    def mask(
        self, source: TableSource, block: Block, pos: int, batch: pa.RecordBatch
    ) -> np.ndarray | None:
        """Bool mask of ``batch`` (rows ``pos``.. of ``block``); None selects every row."""
        ...


class AllRows:
    def counts(self, source: TableSource) -> list[int]:
        return [b.rows for b in source.blocks]

    def mask(
        self, source: TableSource, block: Block, pos: int, batch: pa.RecordBatch
    ) -> np.ndarray | None:
        return None


def uniform(ordinals: np.ndarray, seed: int) -> np.ndarray:
    """A seeded uniform [0, 1) number per row number (splitmix64), the same on every process."""
    with np.errstate(over="ignore"):
        z = ordinals.astype(np.uint64) + np.uint64(seed + 1) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return np.asarray((z >> np.uint64(11)).astype(np.float64) / 2.0**53)


@dataclass(frozen=True)
class HashSplit:
    """A seeded random split by row number: no pass over the data, not stratified."""

    part: str
    seed: int
    val_fraction: float
    test_fraction: float

    def _select(self, ordinals: np.ndarray) -> np.ndarray:
        u = uniform(ordinals, self.seed)
        lo = {
            "test": 0.0,
            "val": self.test_fraction,
            "train": self.test_fraction + self.val_fraction,
        }
        hi = {"test": self.test_fraction, "val": lo["train"], "train": 1.0}
        return np.asarray((u >= lo[self.part]) & (u < hi[self.part]))

    def counts(self, source: TableSource) -> list[int]:
        return [
            int(self._select(np.arange(b.offset, b.offset + b.rows)).sum()) for b in source.blocks
        ]

    def mask(
        self, source: TableSource, block: Block, pos: int, batch: pa.RecordBatch
    ) -> np.ndarray | None:
        start = block.offset + pos
        return self._select(np.arange(start, start + batch.num_rows))


@dataclass(frozen=True)
class ColumnSplit:
    """The rows whose split column names this part (train / val / validation / dev / test)."""

    column: str
    part: str

    def counts(self, source: TableSource) -> list[int]:
        source.check_columns([self.column])
        counts = [0] * len(source.blocks)
        index = {b: i for i, b in enumerate(source.blocks)}
        for block, pos, batch in source.read(source.blocks, [self.column]):
            counts[index[block]] += int(self._names(source, block, pos, batch).sum())
        return counts

    def _names(
        self, source: TableSource, block: Block, pos: int, batch: pa.RecordBatch
    ) -> np.ndarray:
        names = [str(v).strip().lower() for v in batch.column(self.column).to_pylist()]
        for i, name in enumerate(names):
            if name not in SPLIT_NAMES:
                raise DataError(
                    f"{where(source.label(block), block.start + pos + i, self.column)}: unknown "
                    f"split {name!r}; expected one of {sorted(SPLIT_NAMES)}"
                )
        return np.array([SPLIT_NAMES[n] == self.part for n in names], dtype=bool)

    def mask(
        self, source: TableSource, block: Block, pos: int, batch: pa.RecordBatch
    ) -> np.ndarray | None:
        return self._names(source, block, pos, batch)


@dataclass(frozen=True)
class Piece:
    block: int  # index into the source's blocks
    lo: int  # selected rows lo..hi-1 of that block (counted among its selected rows)
    hi: int


def epoch_order(n_blocks: int, seed: int, epoch: int, shuffle: bool) -> list[int]:
    """Block order of one epoch: a seeded permutation, the same on every process."""
    if not shuffle:
        return list(range(n_blocks))
    return np.random.default_rng([seed, epoch]).permutation(n_blocks).tolist()


def rank_bounds(total: int, world: int, rank: int, drop_remainder: bool) -> tuple[int, int]:
    """Rank ``rank``'s slice of ``total`` rows: equal sizes (dropping the remainder) or an exact
    partition (sizes differ by at most one)."""
    if drop_remainder:
        per = total // world
        return rank * per, (rank + 1) * per
    return rank * total // world, (rank + 1) * total // world


def split_range(lo: int, hi: int, parts: int, index: int) -> tuple[int, int]:
    """Part ``index`` of ``parts`` contiguous, near-equal parts of ``lo..hi``."""
    n = hi - lo
    return lo + index * n // parts, lo + (index + 1) * n // parts


def plan(counts: list[int], order: list[int], lo: int, hi: int) -> list[Piece]:
    """The pieces of blocks holding rows ``lo..hi-1`` of the sequence ``order`` makes."""
    pieces: list[Piece] = []
    start = 0
    for b in order:
        end = start + counts[b]
        a, z = max(lo, start), min(hi, end)
        if a < z:
            pieces.append(Piece(b, a - start, z - start))
        start = end
        if start >= hi:
            break
    return pieces


__all__ = [
    "PARTS",
    "AllRows",
    "ColumnSplit",
    "HashSplit",
    "Piece",
    "RowSplit",
    "epoch_order",
    "plan",
    "rank_bounds",
    "split_range",
    "uniform",
]
