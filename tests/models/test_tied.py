"""Tied inputs: two text columns read by one encoder (one set of weights, one fitted
preprocessor), through training, save and load; and the config errors around ``tied``."""

from __future__ import annotations

import pandas as pd
import pytest

from polymodal import Predictor
from polymodal.config import ConfigError, load_config
from tests.tables import make_table


def _config(**title: object) -> dict:
    return {
        "inputs": [
            {"name": "review", "type": "text", "encoder": {"type": "bow", "embed_dim": 8}},
            {"name": "title", "type": "text", "tied": "review", **title},
        ],
        "fusion": {"type": "gated", "dim": 8},
        "outputs": [{"name": "label", "task": "multiclass"}],
        "trainer": {"epochs": 1, "batch_size": 8, "progress": False},
    }


def test_tied_inputs_share_one_encoder_and_round_trip(tmp_path):
    frame = make_table(tmp_path, n=30)
    frame["title"] = frame["review"].str.split().str[:3].str.join(" ")
    frame.loc[::5, "title"] = ""  # empty titles are a missing modality, not a crash
    pred = Predictor(_config()).fit(frame, output_dir=tmp_path / "m", base_dir=tmp_path)
    model = pred.artifact_.model
    assert list(model.encoders) == ["review"] and model.inputs == ["review", "title"]
    assert set(model.fusion.names) == {"review", "title"}
    pipe = pred.artifact_.pipeline
    assert pipe.preprocessors["title"] is pipe.preprocessors["review"]  # one vocabulary
    out = pred.predict(frame, base_dir=tmp_path)
    assert out["missing_modalities"].str.contains("title").sum() == len(frame[::5])
    again = Predictor.load(tmp_path / "m")
    pd.testing.assert_frame_equal(out, again.predict(frame, base_dir=tmp_path))


@pytest.mark.parametrize(
    ("title", "message"),
    [
        ({"tied": "nope"}, "tied must name an untied text input"),
        ({"encoder": {"type": "text_cnn"}}, "must not set its own"),
        ({"preprocessing": {"lowercase": False}}, "must not set its own"),
    ],
)
def test_tied_config_errors(title, message):
    cfg = _config()
    cfg["inputs"][1].update(title)
    with pytest.raises(ConfigError, match=message):
        load_config(cfg)
