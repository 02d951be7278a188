"""Streaming tables: every row read by exactly one (rank, worker) shard, a seeded bounded
shuffle, a streamed fit equal to the in-memory one, and clear errors for bad shards."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader

from polymodal import Predictor
from polymodal.config import DataConfig, load_config
from polymodal.data import DataError, TablePipeline
from polymodal.data.shards import HashSplit
from polymodal.data.source import TableSource
from polymodal.data.stats import Moments, from_json, merge, merge_all, to_json
from polymodal.data.stream import ShuffleBuffer, StreamingTable, fit_streaming, open_streams
from polymodal.models import preprocessing_options
from tests.tables import config_for, make_table

WORDS = ["red", "blue", "green", "small", "large", "soft", "loud", "bright", "dark"]


def frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, n)
    age = rng.normal(size=n) * 10 + 40
    age[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame(
        {
            "review": [" ".join(rng.choice(WORDS, 3)) + f" c{y}" for y in label],
            "age": age,
            "size": np.where(rng.random(n) < 0.1, None, np.array(["S", "M", "L"])[label]),
            "label": np.array(["cat", "dog", "eel"])[label],
        }
    )


CONFIG = {
    "inputs": [
        {"name": "review", "type": "text", "encoder": {"type": "bow", "embed_dim": 8}},
        {"name": "numeric", "type": "numeric", "columns": ["age"]},
        {"name": "size", "type": "categorical"},
    ],
    "outputs": [{"name": "label", "task": "multiclass"}],
    "trainer": {"epochs": 2, "batch_size": 16, "progress": False},
}


def pipeline() -> TablePipeline:
    cfg = load_config(CONFIG)
    options = {i.name: preprocessing_options(i) for i in cfg.inputs}
    return TablePipeline(cfg.inputs, cfg.outputs, options)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """A table of 3 Parquet files with uneven row groups (rows 0..436 in order)."""
    folder = tmp_path_factory.mktemp("shards")
    full = frame(437)
    for i, (a, b) in enumerate([(0, 150), (150, 151), (151, 437)]):  # one file holds 1 row
        pq.write_table(pa.Table.from_pandas(full[a:b], preserve_index=False),
                       folder / f"part-{i}.parquet", row_group_size=37)  # fmt: skip
    return folder, full


def rows_read(table: StreamingTable, worker: int, workers: int) -> list[int]:
    return [r for b in table.record_batches(table.pieces(worker, workers)) for r in b["__row__"].to_pylist()]  # fmt: skip


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("world,workers", [(1, 0), (2, 1), (3, 2), (2, 3)])
def test_every_row_read_by_exactly_one_rank_and_worker(shards, tmp_path, fmt, world, workers):
    folder, full = shards
    if fmt == "csv":  # CSV blocks of 50 rows, read by scanning each file once
        for i, part in enumerate((full.iloc[:200], full.iloc[200:])):
            part.to_csv(tmp_path / f"part-{i}.csv", index=False)
        folder = tmp_path
    source = TableSource(folder, block_rows=50)
    for train in (False, True):
        seen: Counter[int] = Counter()
        per_rank = []
        for rank in range(world):
            table = StreamingTable(source, pipeline(), seed=3).shard(rank, world, 8, workers, train)
            table.set_epoch(1)
            mine = [r for w in range(max(workers, 1)) for r in rows_read(table, w, workers)]
            per_rank.append(len(mine))
            seen.update(mine)
        assert max(seen.values()) == 1  # never twice
        if train:  # equal steps on every rank: at most world - 1 rows wait for the next epoch
            assert len(set(per_rank)) == 1 and len(full) - len(seen) < world
        else:  # evaluation: every row
            assert sorted(seen) == list(range(len(full)))


def test_workers_of_a_real_dataloader_split_a_rank(shards):
    folder, full = shards
    table = StreamingTable(TableSource(folder), pipeline(), seed=0)
    fit_streaming(table.pipeline, table)
    table.shard(0, 1, batch_size=16, workers=2)
    batches = list(DataLoader(table, batch_size=None, num_workers=2))
    assert len(batches) == len(table)
    assert sum(len(b["targets"]["label"]) for b in batches) == len(full)


def test_shuffle_is_seeded_by_epoch_and_bounded(shards):
    folder, full = shards
    table = StreamingTable(TableSource(folder), pipeline(), shuffle_buffer=64, seed=7)
    fit_streaming(table.pipeline, table)
    table.shard(0, 1, batch_size=16, train=True)

    def order(epoch: int) -> list[float]:
        table.set_epoch(epoch)
        return [v for b in table for v in b["features"]["numeric"][:, 0].tolist()]

    first = order(0)
    assert first == order(0)  # same seed and epoch: same order
    assert first != order(1) and sorted(first) == sorted(order(1))
    in_file = table.pipeline.transform_inputs(full, folder)["numeric"].values[:, 0].tolist()
    assert first != in_file and sorted(first) == sorted(in_file)


def test_shuffle_buffer_holds_at_most_capacity_plus_a_chunk():
    rng = np.random.default_rng(0)
    buffer, out, peak = ShuffleBuffer(100, 32, rng), [], 0
    for start in range(0, 1000, 10):
        batch = pa.record_batch({"x": np.arange(start, start + 10)})
        out += [t for t in buffer.push(batch)]
        peak = max(peak, buffer.size)
    out += list(buffer.drain())
    values = [v for t in out for v in t["x"].to_pylist()]
    assert sorted(values) == list(range(1000)) and values != list(range(1000))
    assert peak <= 100 + 32 + 10 and all(t.num_rows == 32 for t in out[:-1])


def test_streamed_fit_equals_the_in_memory_fit(shards):
    folder, full = shards
    table = StreamingTable(TableSource(folder), pipeline())
    streamed = fit_streaming(pipeline(), table).state_dict()
    memory = pipeline().fit(full, folder).state_dict()
    numeric = [s["inputs"].pop("numeric")["fitted"] for s in (streamed, memory)]
    assert streamed == memory  # vocabularies, categories, label classes: identical
    for key in ("mean", "std"):
        assert numeric[0][key] == pytest.approx(numeric[1][key], rel=1e-12)


def test_moments_merge_in_any_split_equals_one_pass():
    x = np.random.default_rng(1).normal(size=(1000, 3)) * [1, 100, 1e-3] + [0, 1e6, 5]
    x[::7, 0] = np.nan
    parts = [Moments.of(p) for p in np.array_split(x, [3, 400, 401, 999])]
    merged = from_json(to_json(merge_all(parts)))  # through JSON, as between processes
    whole = Moments.of(x)
    assert np.allclose(merged.mean, whole.mean, rtol=1e-12)
    assert np.allclose(merged.var, whole.var, rtol=1e-9)
    assert merge({"n": 2, "c": Counter(a=1)}, {"n": 3, "c": Counter(a=2, b=1)}) == {
        "n": 5, "c": Counter(a=3, b=1),
    }  # fmt: skip


def test_hash_split_partitions_rows_and_counts_match_reads(shards):
    folder, full = shards
    source = TableSource(folder)
    parts = {p: StreamingTable(source, pipeline(), HashSplit(p, 5, 0.2, 0.1)) for p in ("train", "val", "test")}  # fmt: skip
    rows = {p: rows_read(t, 0, 1) for p, t in parts.items()}
    assert sum(len(r) for r in rows.values()) == len(full)
    assert set().union(*map(set, rows.values())) == set(range(len(full)))
    assert all(len(rows[p]) == parts[p].rows for p in parts)
    assert 0.1 < len(rows["val"]) / len(full) < 0.3


def test_open_streams_by_split_column(tmp_path):
    data = frame(60).assign(split=["train"] * 40 + ["val"] * 12 + ["test"] * 8)
    data.to_parquet(tmp_path / "t.parquet")
    cfg = DataConfig(split_column="split")
    train, val, test = open_streams(cfg, pipeline(), tmp_path / "t.parquet", None, None)
    assert (train.rows, val.rows, test.rows) == (40, 12, 8)  # type: ignore[union-attr]
    data.loc[45, "split"] = "holdout"
    data.to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DataError, match=r"t\.parquet.*row 45, column 'split'.*unknown split"):
        open_streams(cfg, pipeline(), tmp_path / "t.parquet", None, None)


# -- bad input -----------------------------------------------------------------------------------
def test_a_shard_with_other_columns_or_types_names_the_file(tmp_path):
    frame(10).to_parquet(tmp_path / "a.parquet")
    frame(10).drop(columns="age").to_parquet(tmp_path / "b.parquet")
    with pytest.raises(DataError, match=r"b\.parquet: its columns differ .*missing \['age'\]"):
        TableSource(tmp_path)
    frame(10).assign(age="old").to_parquet(tmp_path / "b.parquet")
    with pytest.raises(
        DataError, match=r"b\.parquet, column 'age': type (large_)?string, expected double"
    ):
        TableSource(tmp_path)
    frame(10).assign(age=1).to_parquet(tmp_path / "b.parquet")  # int64 next to double: widened
    assert TableSource(tmp_path).schema.field("age").type == pa.float64()


def test_a_corrupt_row_group_names_the_file_and_row_group(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pandas(frame(300), preserve_index=False), path,
                   row_group_size=100, compression="zstd")  # fmt: skip
    meta = pq.ParquetFile(path).metadata.row_group(1).column(0)
    raw = bytearray(path.read_bytes())
    start = meta.data_page_offset
    raw[start : start + 40] = b"\xff" * 40  # garbage over the page header of row group 1
    path.write_bytes(bytes(raw))
    table = StreamingTable(TableSource(path), pipeline())
    with pytest.raises(
        DataError, match=r"t\.parquet, row group 1 \(rows 100-199\): cannot be read"
    ):
        list(table.record_batches(table.pieces(0, 1)))


def test_a_table_smaller_than_the_shards_is_refused(tmp_path):
    frame(5).to_parquet(tmp_path / "t.parquet")
    table = StreamingTable(TableSource(tmp_path / "t.parquet"), pipeline())
    table.shard(0, 2, batch_size=2, workers=2, train=True)  # 2 rows per rank, 2 workers: fine
    with pytest.raises(
        DataError, match=r"t\.parquet: 5 rows, fewer than the 6 shards of 2 process"
    ):
        table.shard(1, 2, batch_size=2, workers=3, train=True)


def test_a_missing_table_or_mixed_formats(tmp_path):
    with pytest.raises(DataError, match="no table found"):
        TableSource(tmp_path / "nothing-*.parquet")
    frame(3).to_parquet(tmp_path / "a.parquet")
    frame(3).to_csv(tmp_path / "b.csv")
    with pytest.raises(DataError, match="one format for every file"):
        TableSource(tmp_path)


# -- end to end ----------------------------------------------------------------------------------
def test_predictor_streams_images_and_audio_lazily(tmp_path):
    """All five modalities from a glob of JSON Lines shards, split by hash; the saved model
    predicts like any other."""
    table = make_table(tmp_path, n=48)  # image / audio paths relative to tmp_path
    for i, part in enumerate((table.iloc[:24], table.iloc[24:])):
        part.to_json(tmp_path / f"p{i}.jsonl", orient="records", lines=True)
    cfg = config_for("concat", epochs=1)
    cfg["data"] = {"streaming": True, "val_fraction": 0.25, "test_fraction": 0.0}
    cfg["trainer"]["feature_cache"] = False
    pred = Predictor(cfg).fit(str(tmp_path / "p*.jsonl"), output_dir=tmp_path / "model")
    val = pred.metrics_["val"]
    assert 0 < val["n_rows"] < 48 and "test" not in pred.metrics_
    loaded = Predictor.load(tmp_path / "model")
    assert len(loaded.predict(table.head(5), base_dir=tmp_path)) == 5


def test_predictor_stream_errors_name_file_row_and_column(tmp_path):
    data = frame(40)
    data.loc[33, "age"] = np.nan
    data["age"] = data["age"].astype(object)
    data.loc[33, "age"] = "forty"
    data.iloc[:20].to_csv(tmp_path / "a.csv", index=False)
    data.iloc[20:].to_csv(tmp_path / "b.csv", index=False)
    cfg = {**CONFIG, "data": {"streaming": True}}
    with pytest.raises(DataError, match=r"b\.csv"):
        Predictor(cfg).fit(tmp_path / "*.csv")
    assert torch.get_num_threads() >= 1
