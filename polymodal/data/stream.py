"""Streaming tables: train on a table larger than memory.

A :class:`StreamingTable` is an ``IterableDataset`` over a table on disk (see
:mod:`polymodal.data.source`): each (rank, DataLoader worker) shard reads its own rows (see
:mod:`polymodal.data.shards`), in record batches, through a bounded seeded shuffle buffer; rows
are preprocessed a chunk at a time by the same :class:`TablePipeline` as in memory, so images and
audio are decoded only when their chunk comes up. It yields whole batches, like
``TableDataset.__getitems__``; with a windowed input (a series cut into windows) a batch holds
every window of ``batch_size`` rows (so every rank still takes the same number of steps).

Fitting reads the training stream once (or a sample of ``fit_rows``) with each preprocessor's
``partial_fit``; processes merge their statistics (:mod:`polymodal.data.stats`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch.utils.data import IterableDataset, get_worker_info

from polymodal.config import DataConfig
from polymodal.data.base import DataError
from polymodal.data.dataset import Batch, TableDataset
from polymodal.data.pipeline import TablePipeline
from polymodal.data.shards import (
    AllRows,
    ColumnSplit,
    HashSplit,
    Piece,
    RowSplit,
    epoch_order,
    plan,
    rank_bounds,
    split_range,
)
from polymodal.data.source import FORMATS, TableSource
from polymodal.data.stats import Stats, from_json, merge_all, to_json
from polymodal.utils import dist

CHUNK_ROWS = 1024  # rows preprocessed at once (a multiple of the batch size)
FIT_ORDER = 2**31 - 1  # the block order of the fitting sample: no training epoch uses it


class ShuffleBuffer:
    """Rows wait until ``capacity`` are in, then the buffer is shuffled and all but half of it
    leaves in chunks, so a row can travel far from its neighbours on disk while at most
    ``capacity + chunk`` rows are held. ``capacity`` 0: rows leave in the order they came."""

    def __init__(self, capacity: int, chunk: int, rng: np.random.Generator) -> None:
        self.capacity, self.chunk, self.rng = capacity, chunk, rng
        self.parts: list[pa.RecordBatch] = []
        self.size = 0

    def push(self, batch: pa.RecordBatch) -> Iterator[pa.Table]:
        self.parts.append(batch)
        self.size += batch.num_rows
        if self.capacity == 0 and self.size >= self.chunk:
            yield from self._emit(self.size - self.size % self.chunk, shuffle=False)
        elif self.capacity and self.size >= self.capacity + self.chunk:
            keep = self.capacity // 2
            yield from self._emit((self.size - keep) // self.chunk * self.chunk, shuffle=True)

    def drain(self) -> Iterator[pa.Table]:
        if self.size:
            yield from self._emit(self.size, shuffle=self.capacity > 0)

    def _emit(self, n: int, shuffle: bool) -> Iterator[pa.Table]:
        table = pa.Table.from_batches(self.parts)
        if shuffle:
            table = table.take(pa.array(self.rng.permutation(table.num_rows)))
        rest = table.slice(n)
        self.parts, self.size = rest.to_batches(), rest.num_rows
        for start in range(0, n, self.chunk):
            yield table.slice(start, min(self.chunk, n - start))


class StreamingTable(IterableDataset[Batch]):
    """One part (train / val / test) of a table on disk, as batches of tensors."""

    def __init__(
        self,
        source: TableSource,
        pipeline: TablePipeline,
        split: RowSplit | None = None,
        name: str | None = None,
        shuffle_buffer: int = 10000,
        seed: int = 42,
    ) -> None:
        self.source, self.pipeline = source, pipeline
        self.split: RowSplit = split or AllRows()
        self.name = name or source.path
        columns = [c for i in pipeline.inputs for c in i.cols] + [o.name for o in pipeline.outputs]
        if isinstance(self.split, ColumnSplit):
            columns.append(self.split.column)
        self.columns = list(dict.fromkeys(columns))
        source.check_columns(self.columns)
        self.counts = self.split.counts(source)
        self.rows = sum(self.counts)
        self.shuffle_buffer, self.seed = shuffle_buffer, seed
        self.rank, self.world, self.workers, self.batch_size, self.train = 0, 1, 0, 64, False
        self.epoch = 0
        self._index = {b: i for i, b in enumerate(source.blocks)}

    # -- sharding ----------------------------------------------------------------------------
    def shard(
        self, rank: int, world: int, batch_size: int, workers: int = 0, train: bool = False
    ) -> StreamingTable:
        """Read as rank ``rank`` of ``world`` with ``workers`` DataLoader workers; a training
        shard shuffles and keeps the same number of rows on every rank."""
        self.rank, self.world, self.batch_size, self.workers, self.train = (
            rank, world, batch_size, workers, train,
        )  # fmt: skip
        shards = world * max(workers, 1)
        if train and self.rows // world < max(workers, 1):
            raise DataError(
                f"{self.name}: {self.rows} rows, fewer than the {shards} shards of {world} "
                f"process(es) x {max(workers, 1)} DataLoader worker(s); each shard needs at "
                "least one row: use fewer processes or workers, or a larger table"
            )
        return self

    def set_epoch(self, epoch: int) -> None:
        """The epoch's block order and shuffle seed (call before iterating)."""
        self.epoch = epoch

    def worker_rows(self) -> list[int]:
        lo, hi = rank_bounds(self.rows, self.world, self.rank, self.train)
        parts = max(self.workers, 1)
        return [b - a for a, b in (split_range(lo, hi, parts, w) for w in range(parts))]

    def __len__(self) -> int:
        """Batches this rank yields per epoch."""
        return sum(-(-n // self.batch_size) for n in self.worker_rows())

    def pieces(self, worker: int, workers: int, epoch: int | None = None) -> list[Piece]:
        shuffled = self.train or epoch is not None
        order = epoch_order(
            len(self.counts), self.seed, self.epoch if epoch is None else epoch, shuffled
        )
        lo, hi = rank_bounds(self.rows, self.world, self.rank, self.train)
        return plan(self.counts, order, *split_range(lo, hi, max(workers, 1), worker))

    # -- reading -----------------------------------------------------------------------------
    def record_batches(self, pieces: list[Piece]) -> Iterator[pa.RecordBatch]:
        """The selected rows of ``pieces`` with their table row numbers in ``__row__``."""
        blocks = self.source.blocks
        wanted = {p.block: p for p in pieces}
        seen = dict.fromkeys(wanted, 0)
        groups = [[blocks[p.block] for p in pieces]]
        if self.source.format == "parquet":  # random access: one block at a time, in order
            groups = [[blocks[p.block]] for p in pieces]
        for group in groups:
            for block, pos, batch in self.source.read(group, self.columns):
                i = self._index[block]
                piece, first = wanted[i], seen[i]
                mask = self.split.mask(self.source, block, pos, batch)
                idx = np.arange(batch.num_rows) if mask is None else np.flatnonzero(mask)
                seen[i] += len(idx)
                keep = idx[max(piece.lo - first, 0) : max(piece.hi - first, 0)]
                if len(keep):
                    rows = pa.array(block.offset + pos + keep, pa.int64())
                    yield batch.take(pa.array(keep)).append_column("__row__", rows)
                if seen[i] >= piece.hi and len(group) == 1:
                    break

    def frame(self, table: pa.Table | pa.RecordBatch) -> pd.DataFrame:
        """Rows as a DataFrame indexed by their place in the file, for error messages."""
        frame = table.to_pandas()
        rows = frame.pop("__row__").to_numpy()
        frame.index = pd.Index(self.source.row_labels(rows))
        return frame

    def head(self, n: int) -> pd.DataFrame:
        """The first ``n`` rows in table order (a sample for summaries), as a DataFrame."""
        pieces = plan(self.counts, list(range(len(self.counts))), 0, min(n, self.rows))
        batches = list(self.record_batches(pieces))
        if not batches:
            return pd.DataFrame(columns=self.columns)
        return self.frame(pa.Table.from_batches(batches))

    def _batches(self, table: pa.Table) -> Iterator[Batch]:
        frame = self.frame(table)
        base, src = self.source.base_dir, self.source.path
        data = TableDataset(
            self.pipeline.transform_inputs(frame, base, src),
            self.pipeline.transform_targets(frame, src),
        )
        if data.row_of is None:
            for start in range(0, len(data), self.batch_size):
                yield data.__getitems__(list(range(start, min(start + self.batch_size, len(data)))))
            return
        # windowed rows: a batch holds every window of ``batch_size`` rows, so each rank takes
        # as many steps as without windows; "windows" numbers their rows within the batch
        edges = torch.searchsorted(data.row_of, torch.arange(0, len(frame) + 1, self.batch_size))
        for lo, hi in zip(edges.tolist(), [*edges.tolist()[1:], len(data)], strict=True):
            if hi > lo:
                batch = data.__getitems__(list(range(lo, hi)))
                first = data.row_of[lo]
                yield {**batch, "windows": {"row": data.row_of[lo:hi] - first}}

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if workers != max(self.workers, 1):
            raise RuntimeError(
                f"{self.name}: sharded for {self.workers} DataLoader workers, read by {workers}"
            )
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker])
        chunk = -(-CHUNK_ROWS // self.batch_size) * self.batch_size
        buffer = ShuffleBuffer(self.shuffle_buffer if self.train else 0, chunk, rng)
        for batch in self.record_batches(self.pieces(worker, workers)):
            for table in buffer.push(batch):
                yield from self._batches(table)
        for table in buffer.drain():
            yield from self._batches(table)


# -- fitting ----------------------------------------------------------------------------------
def partial_fit(
    pipeline: TablePipeline, frame: pd.DataFrame, base_dir: Path, source: str, stats: Stats | None
) -> Stats:
    """``stats`` updated with these training rows, for every input and output."""
    stats = stats or {"inputs": {}, "targets": {}}
    inputs = {
        inp.name: pipeline.preprocessors[inp.name].partial_fit(
            frame, inp.cols, base_dir, stats["inputs"].get(inp.name), source, pipeline.access
        )
        for inp in pipeline.inputs
        if inp.tied is None
    }
    targets = {}
    for out in pipeline.outputs:
        target = pipeline.targets[out.name]
        if not hasattr(target, "partial_fit"):
            raise DataError(
                f"{source}: output {out.name!r} (task {out.task}) can only be fitted in memory; "
                "set data.streaming: false"
            )
        targets[out.name] = target.partial_fit(
            frame[out.name], stats["targets"].get(out.name), source
        )
    return {"inputs": inputs, "targets": targets}


def finish_fit(pipeline: TablePipeline, stats: Stats, source: str) -> TablePipeline:
    for inp in pipeline.inputs:
        if inp.tied is None:
            pipeline.preprocessors[inp.name].finish_fit(stats["inputs"][inp.name], inp.cols)
    for out in pipeline.outputs:
        pipeline.targets[out.name].finish_fit(stats["targets"][out.name], source, out.name)
    return pipeline


def fit_streaming(
    pipeline: TablePipeline, table: StreamingTable, fit_rows: int | None = None
) -> TablePipeline:
    """Fit ``pipeline`` on the training stream in one pass: each process reads its share (with
    ``fit_rows``, its share of that many rows, taken in a shuffled block order so the sample
    spans the table) and the processes merge their statistics, so all fit the same state."""
    rank, world = dist.rank(), dist.world_size()
    table.shard(rank, world, batch_size=1)
    limit = None if fit_rows is None else -(-fit_rows // world)
    epoch = None if fit_rows is None else FIT_ORDER
    stats: Stats | None = None
    seen = 0
    for batch in table.record_batches(table.pieces(0, 1, epoch)):
        if limit is not None:
            batch = batch.slice(0, limit - seen)
        seen += batch.num_rows
        stats = partial_fit(pipeline, table.frame(batch), table.source.base_dir, table.name, stats)
        if limit is not None and seen >= limit:
            break
    merged = merge_all([from_json(s) for s in dist.gather_json(to_json(stats))])
    if merged is None:
        raise DataError(f"{table.name}: no training rows")
    return finish_fit(pipeline, merged, table.name)


# -- opening ----------------------------------------------------------------------------------
def should_stream(cfg: DataConfig, train: object) -> bool:
    """``data.streaming``: true, false, or "auto": a folder or glob of shards, or a training
    table larger than ``streaming_threshold_mb`` on disk."""
    if cfg.streaming != "auto":
        return bool(cfg.streaming)
    if not isinstance(train, (str, Path)):
        return False
    text = str(train)
    if any(ch in text for ch in "*?[") or Path(text).is_dir():
        return True
    path = Path(text)
    if not path.exists() or path.suffix.lower() not in FORMATS:
        return False
    return path.stat().st_size > cfg.streaming_threshold_mb * 2**20


def open_streams(
    cfg: DataConfig, pipeline: TablePipeline, train: str | Path, val: object, test: object
) -> tuple[StreamingTable, StreamingTable | None, StreamingTable | None]:
    """Train / val / test streams. Without a val table the train table is split: by
    ``split_column``, else by a seeded hash of the row number (``val_fraction``,
    ``test_fraction``; not stratified). ``val`` / ``test`` that are not paths are left to the
    caller (None here)."""
    source = TableSource(train)

    def stream(src: TableSource, split: RowSplit | None, name: str) -> StreamingTable:
        return StreamingTable(src, pipeline, split, name, cfg.shuffle_buffer, cfg.seed)

    def part(name: str) -> StreamingTable:
        split: RowSplit = (
            ColumnSplit(cfg.split_column, name)
            if cfg.split_column
            else HashSplit(name, cfg.seed, cfg.val_fraction, cfg.test_fraction)
        )
        return stream(source, split, f"{train} ({name} split)")

    def table(path: object) -> StreamingTable | None:
        if not isinstance(path, (str, Path)):
            return None
        return stream(TableSource(path), None, str(path))

    fractions = (cfg.val_fraction, cfg.test_fraction)
    if val is None and not cfg.split_column and (min(fractions) < 0 or sum(fractions) >= 1):
        raise DataError(
            f"{train}: val_fraction ({cfg.val_fraction}) + test_fraction ({cfg.test_fraction}) "
            "must be non-negative and leave rows for training (sum < 1)"
        )
    if val is None:
        test_part = table(test) if test is not None else part("test")
        return part("train"), part("val"), test_part if test_part and test_part.rows else None
    train_part = part("train") if cfg.split_column else stream(source, None, str(train))
    return train_part, table(val), table(test)


__all__ = [
    "ShuffleBuffer",
    "StreamingTable",
    "finish_fit",
    "fit_streaming",
    "open_streams",
    "partial_fit",
    "should_stream",
]
