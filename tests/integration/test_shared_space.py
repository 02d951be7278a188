"""Retrieval and captioning through the whole Predictor: a frozen pretrained image tower with
a trainable projection (through the feature cache) in multi-task training, captioning saved and
reloaded, and config errors."""

import pandas as pd
import pytest

from polymodal import Predictor
from polymodal.config import ConfigError, load_config
from tests.tables import make_table


def test_frozen_efficientnet_retrieval_plus_classification(tmp_path):
    frame = make_table(tmp_path, n=24)
    cfg = {
        "inputs": [
            {"name": "photo", "type": "image", "encoder": {"type": "efficientnet_lite"},
             "preprocessing": {"image_size": 32}},
            {"name": "review", "type": "text", "encoder": {"type": "bow", "embed_dim": 16}},
        ],
        "outputs": [
            {"name": "match", "task": "retrieval", "pair": ["photo", "review"], "head": {"dim": 16}},
            {"name": "label", "task": "multiclass"},
        ],
        "trainer": {"epochs": 2, "batch_size": 8, "lr": 0.01, "progress": False},
    }  # fmt: skip
    pred = Predictor(cfg).fit(frame, val=frame, base_dir=tmp_path)
    first, last = (row["feature_cache"]["photo"] for row in pred.artifact_.history[:2])
    assert first[1] == last[1] <= 25  # EfficientNet ran once per distinct image (+ the blank)
    assert last[0] > first[0] >= 24  # later epochs are served from the cache
    val = pred.metrics_["val"]
    assert "photo_to_review_R@10" in val["match"] and "accuracy" in val["label"]
    out = pred.predict(frame.head(3), base_dir=tmp_path)
    assert out["match"].between(-1, 1).all() and set(out["label"]) <= {"cat", "dog", "eel"}


def test_caption_end_to_end_save_load(tmp_path):
    frame = make_table(tmp_path, n=30)
    frame["caption"] = [f"a {lbl} in the picture" for lbl in frame["label"]]
    cfg = {
        "inputs": [{"name": "photo", "type": "image", "encoder": {"type": "image_cnn", "channels": [8, 16]},
                    "preprocessing": {"image_size": 16}}],
        "outputs": [{"name": "caption", "task": "caption",
                     "head": {"d_model": 32, "ff_dim": 64, "layers": 1, "max_length": 8}}],
        "trainer": {"epochs": 12, "batch_size": 10, "lr": 0.003, "progress": False,
                    "early_stopping_patience": None},
    }  # fmt: skip
    pred = Predictor(cfg).fit(frame, val=frame, output_dir=tmp_path / "m", base_dir=tmp_path)
    metrics = pred.metrics_["val"]["caption"]
    assert metrics["bleu4"] > 50 and metrics["exact_match"] > 0.5  # learnable: colour -> label
    before = pred.predict(frame, base_dir=tmp_path)
    after = Predictor.load(tmp_path / "m").predict(frame, base_dir=tmp_path)
    pd.testing.assert_frame_equal(before, after)
    assert after["caption"].str.startswith("a ").all()


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ([{"name": "m", "task": "retrieval", "pair": ["photo"]}], "pair must name two different"),
        ([{"name": "m", "task": "retrieval", "pair": ["photo", "nope"]}], "valid choices"),
        ([{"name": "label", "task": "multiclass", "pair": ["photo", "text"]}], "retrieval only"),
    ],
)
def test_bad_pairs_are_config_errors(outputs, message):
    cfg = {"inputs": [{"name": "photo", "type": "image"}, {"name": "text", "type": "text"}],
           "outputs": outputs}  # fmt: skip
    with pytest.raises(ConfigError, match=message):
        load_config(cfg)
