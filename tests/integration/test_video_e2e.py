"""A video column (and an audio input reading the clips' own sound tracks) next to tabular
columns, end to end: fit, save, load, predict, evaluate; missing clips and clips without sound;
every fusion method; a frozen EfficientNet-Lite per frame through the feature cache with
modality dropout; ONNX export and the ONNX backend; a streamed Parquet table; bad clips through
the Predictor; importance, robustness and explanations."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from polymodal import Predictor, registry
from polymodal.config import load_config
from polymodal.data import DataError, TablePipeline
from polymodal.models import build_model, preprocessing_options
from tests.tables import add_video, make_table, video_config


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    folder = tmp_path_factory.mktemp("video_table")
    frame = add_video(make_table(folder, n=24), folder)
    frame.loc[0, "clip"] = None  # missing: no picture, no sound
    frame.to_csv(folder / "train.csv", index=False)
    return folder, frame


def test_fit_save_load_predict_evaluate(table, tmp_path):
    folder, frame = table
    pred = Predictor(video_config(epochs=2)).fit(folder / "train.csv", output_dir=tmp_path / "m")
    before = pred.predict(folder / "train.csv")
    loaded = Predictor.load(tmp_path / "m")
    pd.testing.assert_frame_equal(before, loaded.predict(folder / "train.csv"))
    missing = before["missing_modalities"]
    assert "clip" in missing[0] and "sound" in missing[0]
    silent = [i for i in range(1, len(frame)) if i % 5 == 4]  # clips without an audio stream
    assert all("sound" in missing[i] and "clip" not in missing[i] for i in silent)
    assert (
        not missing[[i for i in range(1, len(frame)) if i not in silent]]
        .str.contains("clip|sound")
        .any()
    )
    assert 0 <= loaded.evaluate(folder / "train.csv")["label"]["accuracy"] <= 1
    spec = loaded.artifact_.pipeline.preprocessors["clip"].spec()
    assert spec == {"in_channels": 3, "image_size": 16, "num_frames": 4}


@pytest.fixture(scope="module")
def fitted(table):
    folder, frame = table
    cfg = load_config(video_config())
    options = {i.name: preprocessing_options(i) for i in cfg.inputs}
    pipe = TablePipeline(cfg.inputs, cfg.outputs, options).fit(frame, folder)
    batch = pipe.dataset(frame, folder).__getitems__(list(range(len(frame))))
    return pipe, batch


@pytest.mark.parametrize("fusion", registry.names("fusion"))
def test_every_fusion_takes_a_video_input(fitted, fusion):
    pipe, batch = fitted
    cfg = video_config()
    cfg["fusion"] = {"type": fusion, **({"dim": 4} if fusion == "tensor" else {})}
    torch.manual_seed(0)
    model = build_model(load_config(cfg), pipe.specs(), pipe.num_outputs())
    masks = dict(batch["masks"])
    assert batch["features"]["clip"].shape == (len(masks["clip"]), 4, 3, 16, 16)
    model.train()
    out = model(batch["features"], masks)
    loss, _ = model.loss(out, batch["targets"], masks, {"label": 1.0})
    loss.backward()
    assert torch.isfinite(loss)
    model.eval()
    noisy = dict(batch["features"])  # a masked clip: what the encoder sees must not matter
    noisy["clip"] = noisy["clip"].clone()
    noisy["clip"][0] = torch.randn_like(noisy["clip"][0]) * 100
    with torch.no_grad():
        a, b = model(batch["features"], masks)["label"], model(noisy, masks)["label"]
    assert torch.isfinite(a).all() and torch.allclose(a, b, atol=1e-5)


def test_frozen_frame_encoder_cached_per_frame_with_modality_dropout(table, tmp_path):
    folder, frame = table
    cfg = video_config(epochs=2, sound=False)
    clip = cfg["inputs"][-1]
    clip["encoder"] = {"type": "video_frames", "temporal": "transformer", "hidden": 8,
                       "heads": 2, "frame_encoder": {"type": "efficientnet_lite"}}  # fmt: skip
    clip["preprocessing"] = {"num_frames": 3, "image_size": 32}
    cfg["trainer"] |= {"modality_dropout": 0.5, "feature_cache_dir": str(tmp_path / "cache")}
    pred = Predictor(cfg).fit(frame, base_dir=folder)
    hits, misses = pred.artifact_.history[-1]["feature_cache"]["clip"]
    assert 0 < misses <= 3 * (len(frame) - 1)  # one EfficientNet pass per distinct frame
    assert hits >= 3 * (len(frame) - 1)  # epoch 2 ran no EfficientNet
    assert list((tmp_path / "cache").iterdir())
    pred.save(tmp_path / "m")
    report = pred.export_onnx(frame, tmp_path / "m" / "model.onnx", rows=8, base_dir=folder)
    assert report["max_abs_diff"] <= 1e-4


@pytest.mark.parametrize("encoder", ["video_frames", "video_r21d"])
def test_onnx_backend_predicts_like_torch(table, tmp_path, encoder):
    folder, frame = table
    Predictor(video_config(encoder)).fit(frame, base_dir=folder).save(tmp_path / "m")
    pred = Predictor.load(tmp_path / "m")
    report = pred.export_onnx(frame, tmp_path / "m" / "model.onnx", rows=8, base_dir=folder)
    assert "masked:clip" in report["by_case"] and report["max_abs_diff"] <= 1e-4
    want = pred.predict_proba(frame, base_dir=folder)
    got = Predictor.load(tmp_path / "m", backend="onnx").predict_proba(frame, base_dir=folder)
    assert (want - got).abs().to_numpy().max() <= 1e-4


def test_streamed_parquet_table_and_augmentation(table, tmp_path):
    folder, frame = table
    for i, part in enumerate((frame.iloc[:12], frame.iloc[12:20])):
        part.to_parquet(folder / f"part{i}.parquet")
    frame.iloc[20:].to_parquet(folder / "val.parquet")
    cfg = video_config("video_r21d", sound=False)
    cfg["inputs"][-1]["preprocessing"] |= {"augment": True}
    cfg["data"] = {"streaming": True}
    cfg["trainer"]["feature_cache"] = False
    pred = Predictor(cfg).fit(str(folder / "part*.parquet"), val=str(folder / "val.parquet"))
    out = pred.predict(frame.head(4), base_dir=folder)
    assert len(out) == 4 and out["missing_modalities"].str.contains("clip").tolist()[:2] == [
        True,
        False,
    ]


def test_bad_clips_raise_or_are_masked_through_the_predictor(table):
    folder, frame = table
    (folder / "clips" / "notes.mp4").write_text("not a video, just text\n")
    bad = frame.copy()
    bad.loc[3, "clip"] = "clips/notes.mp4"
    cfg = video_config(sound=False)
    with pytest.raises(DataError, match=r"row 3, column 'clip'.*notes\.mp4.*video"):
        Predictor(cfg).fit(bad, base_dir=folder)
    cfg["data"] = {"bad_cells": "mask"}
    pred = Predictor(cfg).fit(bad, base_dir=folder)
    assert "clip" in pred.predict(bad, base_dir=folder).loc[3, "missing_modalities"]


def test_importance_robustness_and_explanations_run(table, tmp_path):
    folder, frame = table
    pred = Predictor(video_config()).fit(frame, base_dir=folder)
    importance = pred.importance(frame, repeats=2, base_dir=folder)
    assert {"clip", "sound"} <= set(importance["modalities"])
    result = pred.robustness(frame, noise_levels=(0.5,), base_dir=folder)
    assert {"clip", "sound"} <= {r["modality"] for r in result["rows"]}
    (explained,) = pred.explain(frame, rows=[3], base_dir=folder, output_dir=tmp_path / "e")
    assert "clip" in explained["occlusion"] and (tmp_path / "e" / "row_3.png").exists()


def test_explanations_give_each_frame_a_value(table):
    folder, frame = table
    pred = Predictor(video_config(sound=False)).fit(frame, base_dir=folder)
    (explained,) = pred.explain(frame, rows=[3], base_dir=folder)
    frames = explained["modalities"]["clip"]  # integrated gradients summed per frame
    assert frames["kind"] == "frames" and len(frames["values"]) == 4
    assert len(frames["frame_occlusion"]) == 4  # each frame greyed out in turn
    (occluded,) = pred.explain(frame, rows=[5], method="occlusion", base_dir=folder)
    assert len(occluded["modalities"]["clip"]["frame_occlusion"]) == 4


def test_video_models_compress(table, tmp_path):
    """int8 (the GRU over frames quantised; ONNX int8 graph) and structured pruning (conv
    channels of the frame CNN and of the (2+1)-D CNN): each folder loads and predicts."""
    from polymodal.compression.compress import int8, prune

    folder, frame = table
    cfg = video_config(sound=False)
    cfg["inputs"].append(
        {"name": "clip_r21d", "type": "video", "columns": ["clip"],
         "encoder": {"type": "video_r21d", "channels": [4, 8], "out_dim": 8},
         "preprocessing": {"num_frames": 4, "image_size": 16}}
    )  # fmt: skip
    Predictor(cfg).fit(frame, base_dir=folder).save(tmp_path / "m")
    int8(tmp_path / "m", tmp_path / "int8", (frame, folder, "t"), rows=8)
    info = prune(tmp_path / "m", tmp_path / "structured", "structured", 0.5)
    assert info["layers"]
    for out, backend in (("int8", "torch"), ("int8", "onnx"), ("structured", "torch")):
        got = Predictor.load(tmp_path / out, backend=backend).predict(frame, base_dir=folder)
        assert got["label"].isin(["cat", "dog", "eel"]).all(), (out, backend)
