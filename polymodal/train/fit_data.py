"""The data ``Predictor.fit`` trains and scores on: the pipeline fitted on the training rows
(in memory, or in one streamed pass over a table on disk), and the training, validation and test
data built with it."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from polymodal.config import DataConfig, ExperimentConfig
from polymodal.data.dataset import TableDataset
from polymodal.data.io import Table, TableLike, read_any
from polymodal.data.pipeline import TablePipeline
from polymodal.data.split import resolve_tables
from polymodal.data.stream import StreamingTable, fit_streaming, open_streams, should_stream

log = logging.getLogger("polymodal")


@dataclass
class FitData:
    """What ``fit`` trains and scores on."""

    train: TableDataset | StreamingTable
    val: Any  # TableDataset, StreamingTable or None
    test: Any  # a Table (preprocessed after training), a StreamingTable or None
    sample: pd.DataFrame  # training rows for the table summary (all, or the first streamed)
    table: Table | None  # the in-memory training table (None when streamed)

    @property
    def streamed(self) -> bool:
        return isinstance(self.train, StreamingTable)


def fit_data(
    cfg: ExperimentConfig,
    pipeline: TablePipeline,
    train_data: TableLike | None,
    val: TableLike | None,
    test: TableLike | None,
    base_dir: str | Path | None,
) -> FitData:
    """Fit ``pipeline`` on the training rows (in memory, or in one streamed pass) and return
    the training, validation and test data."""
    t0 = time.perf_counter()
    if should_stream(cfg.data, cfg.data.train if train_data is None else train_data):
        train_s, val_ds, test_part = _streams(cfg.data, pipeline, train_data, val, test, base_dir)
        data = FitData(train_s, val_ds, test_part, train_s.head(10_000), None)
    else:
        train_t, val_t, test_t = resolve_tables(
            cfg.data, cfg.outputs, train_data, val, test, base_dir
        )
        pipeline.fit(train_t[0], train_t[1], source=train_t[2])
        val_ds = pipeline.dataset(*val_t) if val_t else None
        data = FitData(pipeline.dataset(*train_t), val_ds, test_t, train_t[0], train_t)
    rows = data.train.rows if data.streamed else len(data.train)  # type: ignore[union-attr,arg-type]
    log.info("preprocessing fitted on %d training rows in %.1fs", rows, time.perf_counter() - t0)
    return data


def _streams(
    d: DataConfig,
    pipeline: TablePipeline,
    train_data: TableLike | None,
    val: TableLike | None,
    test: TableLike | None,
    base_dir: str | Path | None,
) -> tuple[StreamingTable, Any, Any]:
    """Streamed train / val / test (DataFrames for val / test stay in memory); the
    preprocessing is fitted in one pass over the training stream, shared by all ranks."""
    train_data = d.train if train_data is None else train_data
    if not isinstance(train_data, (str, Path)):
        raise ValueError("data.streaming reads the training table from disk: pass its path")
    val, test = (d.val if val is None else val), (d.test if test is None else test)
    train_s, val_s, test_s = open_streams(d, pipeline, train_data, val, test)
    fit_streaming(pipeline, train_s, d.fit_rows)
    val_ds = (
        val_s
        if val_s is not None or val is None
        else pipeline.dataset(*read_any(val, "val", base_dir))
    )
    test_ds = test_s if test_s is not None or test is None else read_any(test, "test", base_dir)
    return train_s, val_ds, test_ds


__all__ = ["FitData", "fit_data"]
