"""``index`` runs a frozen encoder through the frozen-feature cache training uses (rows seen in
training or in an earlier index cost no encoder pass, on disk across runs) and batches its
encoder passes (ceil(rows / batch) forward calls, never one per row); progress is reported."""

import logging
import math

import numpy as np
import pytest
import torch

from polymodal import Predictor
from polymodal.export import index as ix
from tests.export.test_index import config as plain_config
from tests.tables import make_table


def frozen_config(cache_dir):
    """The photo side is a frozen (random-weight, 32 px) EfficientNet-Lite0: cached."""
    cfg = plain_config(epochs=1)
    cfg["inputs"][0] = {
        "name": "photo", "type": "image", "preprocessing": {"image_size": 32},
        "encoder": {"type": "efficientnet_lite", "pretrained": False, "freeze": True},
    }  # fmt: skip
    cfg["trainer"]["feature_cache_dir"] = str(cache_dir)
    return cfg


def count_passes(pred, name):
    """Wrap ``name``'s encoder so that its forward calls and their batch sizes are recorded."""
    encoder = pred.artifact_.model.encoders[name]
    calls: list[int] = []
    forward = encoder.forward

    def counted(x):
        calls.append(len(x))
        return forward(x)

    encoder.forward = counted
    return calls


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("index_cache")
    train = make_table(folder, n=24)
    train.to_csv(folder / "train.csv", index=False)
    new = make_table(folder / "new", n=150, seed=5)  # 150 images training never saw
    new.to_csv(folder / "new" / "table.csv", index=False)
    pred = Predictor(frozen_config(folder / "cache")).fit(
        train, output_dir=folder / "m", base_dir=folder
    )
    return folder, pred


def test_index_reuses_the_training_cache(trained):
    folder, _ = trained
    pred = Predictor.load(folder / "m")
    calls = count_passes(pred, "photo")
    assert pred.index(folder / "train.csv", "photo")["size"] == 24
    assert calls == []  # every training image was encoded once, during training


def test_index_batches_and_a_second_run_never_runs_the_encoder(trained, tmp_path):
    folder, _ = trained
    make_table(tmp_path, n=150, seed=7).to_csv(tmp_path / "table.csv", index=False)  # unseen
    table = tmp_path / "table.csv"
    pred = Predictor.load(folder / "m")
    calls = count_passes(pred, "photo")
    first = pred.index(table, "photo", model_dir=tmp_path / "a")
    assert first["size"] == 150
    assert calls == [64, 64, 22]  # ceil(150 / 64) passes of at most 64 rows
    assert not pred.artifact_.model.feature_caches  # detached after the call
    # a fresh process: the features come from the cache's shards on disk
    again = Predictor.load(folder / "m")
    calls = count_passes(again, "photo")
    again.index(table, "photo", model_dir=tmp_path / "b")
    assert calls == []
    a = ix.load_index(tmp_path / "a", "photo").index.reconstruct_n(0, 150)
    b = ix.load_index(tmp_path / "b", "photo").index.reconstruct_n(0, 150)
    assert np.array_equal(a, b)


def test_cached_and_uncached_index_agree(trained, tmp_path):
    folder, _ = trained
    table = folder / "new" / "table.csv"
    cached = Predictor.load(folder / "m")
    cached.index(table, "photo", model_dir=tmp_path / "cached")
    plain = Predictor.load(folder / "m")
    plain.artifact_.config.trainer.feature_cache = False
    calls = count_passes(plain, "photo")
    plain.index(table, "photo", model_dir=tmp_path / "plain")
    assert calls == [64, 64, 22]  # without a cache: batched all the same
    a = ix.load_index(tmp_path / "cached", "photo").index.reconstruct_n(0, 150)
    b = ix.load_index(tmp_path / "plain", "photo").index.reconstruct_n(0, 150)
    assert np.abs(a - b).max() <= 1e-5


def test_trainable_encoder_passes_are_batched(tmp_path):
    frame = make_table(tmp_path, n=40)
    pred = Predictor(plain_config(epochs=1)).fit(frame, base_dir=tmp_path)
    calls = count_passes(pred, "photo")
    art = pred.artifact_
    si = ix.build_index(art, frame, "photo", tmp_path, "t", batch_size=16)
    assert si.size == 40 and calls == [16, 16, 8]
    assert math.ceil(40 / 16) == len(calls)


def test_index_reports_progress(trained, tmp_path, monkeypatch, caplog):
    folder, _ = trained
    monkeypatch.setenv("POLYMODAL_PROGRESS_EVERY", "0")  # a log line for every batch
    with caplog.at_level(logging.INFO, logger="polymodal.progress"):
        Predictor.load(folder / "m").index(
            folder / "new" / "table.csv", "photo", model_dir=tmp_path
        )
    lines = [r.getMessage() for r in caplog.records if "embedding for the index" in r.message]
    assert any("128/150 rows" in line for line in lines), lines


def test_files_decode_on_one_thread_and_the_encoder_keeps_every_thread(trained, tmp_path):
    """Per-file decoding is tiny ops (one thread: no hand-off waits on a busy machine); the
    setting is restored for the encoder's passes and after the call, even after an error."""
    folder, _ = trained
    pred = Predictor.load(folder / "m")
    pre = pred.artifact_.pipeline.preprocessors["photo"]
    encoder = pred.artifact_.model.encoders["photo"]
    seen: dict[str, list[int]] = {"decode": [], "encode": []}
    transform, forward = pre.transform, encoder.forward

    def decode(*args, **kwargs):
        seen["decode"].append(torch.get_num_threads())
        return transform(*args, **kwargs)

    def encode(x):
        seen["encode"].append(torch.get_num_threads())
        return forward(x)

    pre.transform, encoder.forward = decode, encode
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        make_table(tmp_path, n=70, seed=9).to_csv(tmp_path / "t.csv", index=False)
        pred.index(tmp_path / "t.csv", "photo", model_dir=tmp_path)
        assert seen == {"decode": [1, 1], "encode": [2, 2]}
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), ix.one_thread():
            raise RuntimeError
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
