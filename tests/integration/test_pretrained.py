"""Hugging Face encoders inside a full Predictor run: tokenizer / image size come from the
encoder's input_spec, nothing is downloaded, and save -> load reproduces predictions."""

import pandas as pd

from polymodal import Predictor
from tests.tables import make_table

TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 37,
}


def test_hf_text_and_image_end_to_end(tmp_path):
    frame = make_table(tmp_path, n=30)
    cfg = {
        "inputs": [
            {"name": "review", "type": "text",
             "encoder": {"type": "hf", "config": {"model_type": "bert", "vocab_size": 30522, **TINY}}},
            {"name": "photo", "type": "image",
             "encoder": {"type": "hf", "config": {"model_type": "vit", "image_size": 32, "patch_size": 8, **TINY}}},
            {"name": "numeric", "type": "numeric", "columns": ["age"]},
        ],
        "fusion": {"type": "gated", "dim": 16},
        "outputs": [{"name": "label", "task": "multiclass"}],
        "trainer": {"epochs": 1, "batch_size": 8, "progress": False},
    }  # fmt: skip
    pred = Predictor(cfg).fit(frame, val=frame, output_dir=tmp_path / "m", base_dir=tmp_path)
    pipe = pred.artifact_.pipeline
    assert pipe.preprocessors["review"].tokenizer != "word"  # the MiniLM WordPiece tokenizer
    assert pipe.preprocessors["photo"].image_size == 32
    again = Predictor.load(tmp_path / "m")
    pd.testing.assert_frame_equal(
        pred.predict(frame, base_dir=tmp_path), again.predict(frame, base_dir=tmp_path)
    )


def test_frozen_minilm_end_to_end(tmp_path):
    frame = make_table(tmp_path, n=24)
    cfg = {
        "inputs": [
            {"name": "review", "type": "text", "encoder": {"type": "minilm", "max_length": 32}}
        ],
        "outputs": [{"name": "flag", "task": "binary"}],
        "trainer": {"epochs": 2, "batch_size": 8, "progress": False, "lr": 0.01},
    }
    pred = Predictor(cfg).fit(frame, val=frame, base_dir=tmp_path)
    enc = pred.artifact_.model.encoders["review"]
    assert enc.out_dim == 384 and not any(p.requires_grad for p in enc.parameters())
    assert pred.metrics_["val"]["flag"]["roc_auc"] is not None
