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
from polymodal.evaluation.report import ReportOptions
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
    motion = explained["modalities"]["motion"]
    assert "no gradient" in motion["attribution"]
    assert motion["kind"] == "channels" and set(motion["channel_occlusion"]) == {"x", "y", "z"}
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
    motion = explained["modalities"]["motion"]  # time x channel: the step mask is no channel
    assert motion["kind"] == "time_channel" and motion["shape"][1] == 3
    assert len(motion["values"][0]) == 3 and list(motion["channel_abs"]) == ["x", "y", "z"]


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


def windowed_config(encoder: str = "series_cnn", epochs: int = 2) -> dict:
    cfg = light(encoder, epochs)
    cfg["inputs"][-1]["preprocessing"] = {"window": 8, "stride": 4}
    return cfg


@pytest.fixture(scope="module")
def windowed(table, tmp_path_factory):
    """A model over windows of 8 steps (stride 4) of the series, beside the tabular columns."""
    folder, frame = table
    out = tmp_path_factory.mktemp("windowed") / "m"
    Predictor(windowed_config()).fit(frame, base_dir=folder, output_dir=out)
    return out


def test_windowed_rows_get_one_answer_from_their_windows(table, windowed, tmp_path):
    """predict / evaluate average each row's windows (mean log-probabilities); window accuracy
    is reported beside the per-row metrics; ONNX Runtime scores windows the same way."""
    from polymodal.evaluation.evaluate import predict_logits

    folder, frame = table
    pred = Predictor.load(windowed)
    out = pred.predict(frame, base_dir=folder)
    assert len(out) == len(frame) and out.index.equals(frame.index)
    assert out["missing_modalities"].iloc[:2].str.contains("motion").all()  # one masked window
    art = pred.artifact_
    ds = art.pipeline.dataset(frame, folder)
    assert ds.n_rows == len(frame) and len(ds) > len(frame)
    logits = predict_logits(art.model, ds)["label"]
    assert ds.row_of is not None
    for r in (2, 3, 10):  # the row's probabilities: the normalised geometric mean of its windows'
        p = torch.softmax(logits[ds.row_of == r], -1).log().mean(0).exp()
        want = (p / p.sum()).numpy()
        got = out.iloc[r][["label_proba_cat", "label_proba_dog", "label_proba_eel"]].to_numpy()
        assert np.allclose(got.astype(float), want, atol=1e-5)
    report = pred.evaluate(frame, base_dir=folder)
    assert report["n_rows"] == len(frame) and report["n_windows"] == len(ds)
    hits = (out["label"] == frame["label"]).mean()
    assert report["label"]["accuracy"] == pytest.approx(hits)
    windows_right = (logits.argmax(-1) == ds.targets["label"]).float().mean()
    assert report["label"]["window_accuracy"] == pytest.approx(float(windows_right))
    onnx = pred.export_onnx(frame, windowed / "model.onnx", rows=16, base_dir=folder)
    assert onnx["max_abs_diff"] <= 1e-4
    got = Predictor.load(windowed, backend="onnx").predict_proba(frame, base_dir=folder)
    assert (got - pred.predict_proba(frame, base_dir=folder)).abs().to_numpy().max() <= 1e-4


def test_windowed_series_explained_over_time_and_channels(table, windowed, tmp_path):
    """The map covers the whole series (not a window), channels only (no mask channel), with
    per-channel occlusion; the report shows channel importance; importance counts rows."""
    folder, frame = table
    pred = Predictor.load(windowed)
    (explained,) = pred.explain(frame, rows=[3], base_dir=folder, output_dir=tmp_path / "ex")
    motion = explained["modalities"]["motion"]
    steps = len(np.load(folder / frame.loc[3, "motion"])) if frame.loc[3, "motion"].endswith(
        ".npy") else len(pd.read_csv(folder / frame.loc[3, "motion"]))  # fmt: skip
    assert motion["kind"] == "time_channel" and motion["shape"] == [steps, 3]
    assert motion["channels"] == ["x", "y", "z"] and set(motion["channel_occlusion"]) == {
        "x",
        "y",
        "z",
    }
    assert (tmp_path / "ex" / "row_3.png").stat().st_size > 0
    importance = pred.importance(frame, repeats=2, base_dir=folder)
    assert importance["n_rows"] == len(frame)
    options = ReportOptions(max_rows=12, examples=1, repeats=2, robustness_rows=12)
    pred.report(tmp_path / "report.html", data=frame, base_dir=folder, options=options)
    page = (tmp_path / "report.html").read_text()
    assert "Channel importance" in page and "plot-channel-importance" in page
    assert set(pred.report_["channel_importance"]["inputs"]["motion"]["channels"]) == {
        "x",
        "y",
        "z",
    }


def test_windowed_streamed_validation_scores_rows(tmp_path):
    """A streamed table: batches of whole rows' windows; validation aggregated per row equals
    evaluating the saved model in memory."""
    frame = add_series(make_table(tmp_path, n=40), tmp_path, inline=True)
    frame.iloc[:32].to_parquet(tmp_path / "train.parquet")
    frame.iloc[32:].to_parquet(tmp_path / "val.parquet")
    cfg = windowed_config(epochs=1)
    cfg["data"] = {"streaming": True}
    cfg["trainer"] |= {"feature_cache": False, "batch_size": 4}
    streamed = Predictor(cfg).fit(
        str(tmp_path / "train.parquet"),
        val=str(tmp_path / "val.parquet"),
        output_dir=tmp_path / "m",
    )
    val = streamed.metrics_["val"]
    memory = Predictor.load(tmp_path / "m").evaluate(tmp_path / "val.parquet")
    assert val["n_rows"] == memory["n_rows"] == 8 and val["n_windows"] == memory["n_windows"]
    assert val["loss"] == pytest.approx(memory["loss"], abs=1e-5)
    assert val["label"]["window_accuracy"] == pytest.approx(memory["label"]["window_accuracy"])


def test_series_mirrored_by_a_categorical_input(table, tmp_path):
    """``mirror`` reads another input's column: fit, save, load and predict agree, and ONNX
    export keeps parity; a mirror column that no input reads, or a target, is refused."""
    folder, frame = table
    cfg = light("minirocket")
    motion = next(i for i in cfg["inputs"] if i["name"] == "motion")
    motion["preprocessing"] = {"mirror": {"column": "size", "value": "S", "negate": [0, 2]}}
    pred = Predictor(cfg).fit(frame, base_dir=folder)
    pred.save(tmp_path / "m")
    loaded = Predictor.load(tmp_path / "m")
    got = loaded.predict_proba(frame, base_dir=folder)
    pd.testing.assert_frame_equal(got, pred.predict_proba(frame, base_dir=folder))
    swapped = frame.assign(size=frame["size"].map({"S": "M", "M": "S"}).fillna(frame["size"]))
    pipeline, every = loaded.artifact_.pipeline, torch.arange(len(frame))
    before = pipeline.transform_inputs(frame, folder)["motion"].rows(every)
    after = pipeline.transform_inputs(swapped, folder)["motion"].rows(every)
    changed = (before != after).flatten(1).any(1).numpy()
    assert np.array_equal(
        changed, frame["size"].isin(["S", "M"]).to_numpy() & (np.arange(len(frame)) > 1)
    )
    report = loaded.export_onnx(frame, tmp_path / "m" / "model.onnx", rows=16, base_dir=folder)
    assert report["max_abs_diff"] <= 1e-4
    for column, message in (("flag", "which no input reads"), ("label", "a leak")):
        bad = light("minirocket")
        bad["inputs"][-1]["preprocessing"] = {
            "mirror": {"column": column, "value": "1", "negate": [0]}
        }
        with pytest.raises(ValueError, match=message):
            Predictor(bad).fit(frame, base_dir=folder)
