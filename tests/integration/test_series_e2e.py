"""A time-series column next to text and tabular columns, end to end: fit, save,
load, predict, evaluate; every fusion method; missing and empty series; modality dropout; the
frozen-feature cache for MiniRocket; ONNX export and the ONNX backend at other lengths; a
streamed table with the series inline; bad series files through the Predictor; importance,
robustness and explanations run on such a model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from polymodal import Predictor, registry
from polymodal.config import load_config
from polymodal.data import DataError, TablePipeline
from polymodal.models import build_model, preprocessing_options
from tests.tables import SERIES_ENCODERS, add_series, make_table, series_config


def light(encoder: str = "series_cnn", epochs: int = 1) -> dict:
    """The series beside the tabular columns only (image, audio and text cost time here)."""
    cfg = series_config("concat", epochs, encoder)
    cfg["inputs"] = [i for i in cfg["inputs"] if i["type"] not in ("text", "image", "audio")]
    return cfg


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    folder = tmp_path_factory.mktemp("series_table")
    frame = add_series(make_table(folder, n=36), folder)
    (folder / "series" / "empty.csv").write_text("x,y,z\n")  # a series with no steps
    frame.loc[0, "motion"] = None  # missing
    frame.loc[1, "motion"] = "series/empty.csv"  # empty: missing too
    frame.to_csv(folder / "train.csv", index=False)
    return folder, frame


def test_fit_save_load_predict_evaluate(table, tmp_path):
    folder, _ = table
    pred = Predictor(light(epochs=2)).fit(folder / "train.csv", output_dir=tmp_path / "m")
    before = pred.predict(folder / "train.csv")
    loaded = Predictor.load(tmp_path / "m")
    pd.testing.assert_frame_equal(before, loaded.predict(folder / "train.csv"))
    assert before["missing_modalities"].iloc[:2].str.contains("motion").all()
    assert not before["missing_modalities"].iloc[2:].str.contains("motion").any()
    assert 0 <= loaded.evaluate(folder / "train.csv")["label"]["accuracy"] <= 1
    spec = loaded.artifact_.pipeline.preprocessors["motion"].spec()
    assert spec == {"in_channels": 3, "series_length": 512}


def test_the_series_alone_carries_the_label(table):
    folder, frame = table
    cfg = light("minirocket", epochs=12)
    cfg["inputs"] = cfg["inputs"][-1:]  # motion only
    cfg["trainer"]["lr"] = 0.003
    pred = Predictor(cfg).fit(frame.iloc[2:], val=frame.iloc[2:], base_dir=folder)
    assert pred.evaluate(frame.iloc[2:], base_dir=folder)["label"]["accuracy"] >= 0.9


def fusion_config(fusion: str) -> dict:
    """The series with text and tabular inputs under ``fusion`` (image and audio cost time)."""
    cfg = series_config(fusion, **({"dim": 4} if fusion == "tensor" else {}))
    cfg["inputs"] = [i for i in cfg["inputs"] if i["type"] not in ("image", "audio")]
    return cfg


@pytest.fixture(scope="module")
def fitted(table):
    """A fitted pipeline over the series, text and tabular inputs; one batch of every row."""
    folder, frame = table
    cfg = load_config(fusion_config("concat"))
    options = {i.name: preprocessing_options(i) for i in cfg.inputs}
    pipe = TablePipeline(cfg.inputs, cfg.outputs, options).fit(frame, folder)
    batch = pipe.dataset(frame, folder).__getitems__(list(range(len(frame))))
    return pipe, batch


@pytest.mark.parametrize("fusion", registry.names("fusion"))
def test_every_fusion_takes_a_series_input(fitted, fusion):
    pipe, batch = fitted
    cfg = load_config(fusion_config(fusion))
    torch.manual_seed(0)
    model = build_model(cfg, pipe.specs(), pipe.num_outputs())
    masks = dict(batch["masks"])
    assert masks["motion"][:2].tolist() == [False, False] and bool(masks["motion"][2:].all())
    model.train()
    out = model(batch["features"], masks)
    loss, _ = model.loss(out, batch["targets"], masks, {"label": 1.0})
    loss.backward()
    assert torch.isfinite(loss)
    model.eval()
    noisy = dict(batch["features"])  # masked rows: what the encoder sees must not matter
    noisy["motion"] = noisy["motion"].clone()
    noisy["motion"][:2, :, :-1] = torch.randn_like(noisy["motion"][:2, :, :-1]) * 100
    with torch.no_grad():
        a, b = model(batch["features"], masks)["label"], model(noisy, masks)["label"]
    assert torch.isfinite(a).all() and torch.allclose(a, b, atol=1e-5)


def test_minirocket_cached_with_modality_dropout_and_explained(table, tmp_path):
    folder, frame = table
    cfg = light("minirocket", epochs=2)
    cfg["trainer"] |= {"modality_dropout": 0.5, "feature_cache_dir": str(tmp_path / "cache")}
    pred = Predictor(cfg).fit(frame, base_dir=folder)
    hits, misses = pred.artifact_.history[-1]["feature_cache"]["motion"]
    assert misses <= len(frame) and hits >= len(frame) // 2  # epoch 2 ran no MiniRocket
    assert list((tmp_path / "cache").iterdir())  # written for the next run
    (explained,) = pred.explain(frame, rows=[3], base_dir=folder)  # no gradient: occlusion only
    assert "no gradient" in explained["modalities"]["motion"]["attribution"]
    assert "motion" in explained["occlusion"]


def test_onnx_export_and_backend_at_other_lengths(table, tmp_path):
    folder, frame = table
    cfg = light("minirocket")
    cfg["inputs"].append(
        {"name": "motion_patches", "type": "timeseries", "columns": ["motion"],
         "encoder": {"type": "patchtst", **SERIES_ENCODERS["patchtst"]}}
    )  # fmt: skip
    Predictor(cfg).fit(frame, base_dir=folder).save(tmp_path / "m")
    pred = Predictor.load(tmp_path / "m")
    report = pred.export_onnx(frame, tmp_path / "m" / "model.onnx", rows=16, base_dir=folder)
    assert {"shorter", "half", "masked:motion", "masked:motion_patches"} <= set(report["by_case"])
    longer = add_series(make_table(tmp_path, n=6), tmp_path, inline=True)
    longer["motion"] = [steps * 3 for steps in longer["motion"]]  # 24 to 72 steps
    longer.loc[longer.index[0], "motion"] = None
    want = Predictor.load(tmp_path / "m").predict_proba(longer, base_dir=tmp_path)
    got = Predictor.load(tmp_path / "m", backend="onnx").predict_proba(longer, base_dir=tmp_path)
    assert (want - got).abs().to_numpy().max() <= 1e-4


def test_streamed_table_with_inline_series(tmp_path):
    frame = add_series(make_table(tmp_path, n=40), tmp_path, inline=True)
    train = frame.iloc[:32]
    for i, part in enumerate((train.iloc[:20], train.iloc[20:])):
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), tmp_path / f"p{i}.parquet")
    frame.iloc[32:].to_parquet(tmp_path / "val.parquet")
    cfg = light()
    cfg["data"] = {"streaming": True}
    cfg["trainer"]["feature_cache"] = False
    streamed = Predictor(cfg).fit(
        str(tmp_path / "p*.parquet"), val=str(tmp_path / "val.parquet"), output_dir=tmp_path / "m"
    )
    memory = load_config(light())
    options = {i.name: preprocessing_options(i) for i in memory.inputs}
    pipe = TablePipeline(memory.inputs, memory.outputs, options).fit(train, tmp_path)
    got = streamed.artifact_.pipeline.preprocessors["motion"].fitted_state()
    want = pipe.preprocessors["motion"].fitted_state()
    assert got["n_channels"] == want["n_channels"] == 3 and got["names"] is None
    assert np.allclose(got["mean"], want["mean"]) and np.allclose(got["std"], want["std"])
    out = Predictor.load(tmp_path / "m").predict(frame.head(5), base_dir=tmp_path)
    assert len(out) == 5 and not out["missing_modalities"].str.contains("motion").any()


def test_bad_series_files_raise_or_are_masked_through_the_predictor(table, tmp_path):
    folder, frame = table
    (folder / "series" / "ragged.csv").write_text("x,y,z\n1,2,3\n4,5\n")
    bad = frame.copy()
    bad.loc[5, "motion"] = "series/ragged.csv"
    cfg = light()
    with pytest.raises(DataError, match=r"row 5, column 'motion'.*ragged.csv.*line 3 has 2 fields"):
        Predictor(cfg).fit(bad, base_dir=folder)
    cfg["data"] = {"bad_cells": "mask"}
    pred = Predictor(cfg).fit(bad, base_dir=folder)
    assert "motion" in pred.predict(bad, base_dir=folder).loc[5, "missing_modalities"]


def test_importance_robustness_and_explanations_run(table, tmp_path):
    folder, frame = table
    pred = Predictor(light()).fit(frame, base_dir=folder)
    importance = pred.importance(frame, repeats=3, base_dir=folder)
    assert "motion" in importance["modalities"]
    result = pred.robustness(frame, noise_levels=(0.5,), base_dir=folder)
    assert {"motion"} <= {r["modality"] for r in result["rows"]}
    (explained,) = pred.explain(frame, rows=[3], base_dir=folder)
    assert "motion" in explained["occlusion"]


def test_series_models_compress(table, tmp_path):
    """int8 (the GRU quantised; its ONNX graph int8) and both prunings on a model with a CNN and
    a GRU over the series: each compressed folder loads and predicts."""
    from polymodal.compression.compress import int8, prune

    folder, frame = table
    cfg = light()
    for encoder in ("series_gru",):
        cfg["inputs"].append(
            {"name": f"motion_{encoder}", "type": "timeseries", "columns": ["motion"],
             "encoder": {"type": encoder, **SERIES_ENCODERS[encoder]}}
        )  # fmt: skip
    Predictor(cfg).fit(frame, base_dir=folder).save(tmp_path / "m")
    int8(tmp_path / "m", tmp_path / "int8", (frame, folder, "t"), rows=8)
    for method in ("magnitude", "structured"):
        info = prune(tmp_path / "m", tmp_path / method, method, 0.5)
        assert info["sparsity"] > 0 or info["layers"]
    for out, backend in (("int8", "torch"), ("int8", "onnx"), ("magnitude", "torch"),
                         ("structured", "torch")):  # fmt: skip
        got = Predictor.load(tmp_path / out, backend=backend).predict(frame, base_dir=folder)
        assert got["label"].isin(["cat", "dog", "eel"]).all(), (out, backend)
