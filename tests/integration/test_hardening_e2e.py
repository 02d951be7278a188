"""Issue 17 end to end, through the Python API and the CLI: no silent NaN predictions, paths
confined to the table's folder, empty tables, reports without machine paths."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from polymodal import Predictor
from polymodal.cli import app
from polymodal.data.base import DataError
from polymodal.evaluation.report import ReportOptions
from tests.tables import config_for, make_table

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, pd.DataFrame, Path]:
    """(table folder, its rows, saved model) with data.train an absolute path in config.yaml."""
    folder = tmp_path_factory.mktemp("hard")
    frame = make_table(folder, n=24)
    frame.to_csv(folder / "t.csv", index=False)
    cfg = config_for(epochs=1)
    cfg["data"]["train"] = str(folder / "t.csv")
    Predictor(cfg).fit(output_dir=folder / "model")
    return folder, frame, folder / "model"


def _nan_table(folder: Path, frame: pd.DataFrame) -> Path:
    wave = np.zeros(4000, dtype=np.float32)
    wave[10:20] = np.nan
    sf.write(folder / "wav" / "nan.wav", wave, 8000, subtype="FLOAT")
    bad = frame.copy()
    bad.loc[2, "voice"] = "wav/nan.wav"
    bad.to_csv(folder / "nan.csv", index=False)
    return folder / "nan.csv"


def _masking(model: Path, tmp: Path) -> Path:
    """A copy of ``model`` saved with data.bad_cells: mask."""
    copy = tmp / "masking"
    shutil.copytree(model, copy)
    state = json.loads((copy / "preprocessing.json").read_text())
    (copy / "preprocessing.json").write_text(json.dumps({**state, "bad_cells": "mask"}))
    return copy


def test_nan_audio_is_never_a_silent_prediction(trained, tmp_path):
    folder, frame, model = trained
    table = _nan_table(folder, frame)
    with pytest.raises(DataError, match=r"nan.csv, row 2, column 'voice'.*NaN or inf"):
        Predictor.load(model).predict(table)
    res = runner.invoke(app, ["predict", str(model), str(table), "-o", str(tmp_path / "p.csv")])
    assert res.exit_code == 2 and "row 2, column 'voice'" in res.output, res.output
    masking = _masking(model, tmp_path)
    out = Predictor.load(masking).predict(table)
    probs = out[[c for c in out.columns if "_proba_" in c]].to_numpy()
    assert np.isfinite(probs).all() and "voice" in out.loc[2, "missing_modalities"]
    res = runner.invoke(app, ["predict", str(masking), str(table), "-o", str(tmp_path / "m.csv")])
    assert res.exit_code == 0, res.output
    assert np.isfinite(pd.read_csv(tmp_path / "m.csv").filter(like="_proba_").to_numpy()).all()


def test_non_finite_outputs_are_an_error_naming_rows(trained):
    folder, frame, model = trained
    pred = Predictor.load(model)
    head = pred.artifact_.model.heads["label"]
    weight = next(p for p in head.parameters() if p.dim() == 2)
    with torch.no_grad():
        weight.fill_(float("nan"))
    with pytest.raises(
        DataError, match=r"row\(s\) \[0, 1, 2, 3, 4\] \.\.\.: the output 'label' is not finite"
    ):
        pred.predict(frame, base_dir=folder)


def test_table_cells_cannot_reach_outside_the_folder(trained, tmp_path):
    folder, frame, model = trained
    secret = tmp_path / "secret.wav"
    shutil.copy(folder / "wav" / "0.wav", secret)
    bad = frame.copy()
    bad.loc[1, "voice"] = str(secret)
    bad.loc[3, "voice"] = "../" * 12 + str(secret).lstrip("/")
    bad.to_csv(folder / "outside.csv", index=False)
    res = runner.invoke(app, ["predict", str(model), str(folder / "outside.csv")])
    assert res.exit_code == 2 and "row 1, column 'voice'" in res.output
    assert (
        "is outside the table's folder" in res.output and "data.allow_outside: true" in res.output
    )
    with pytest.raises(DataError, match=r"row 1, column 'voice'.*outside"):  # DataFrames too
        Predictor.load(model).predict(bad, base_dir=folder)
    cfg = config_for(epochs=1)
    cfg["data"] |= {"roots": [str(tmp_path)]}  # the opt-in: a further folder
    pred = Predictor(cfg).fit(bad, base_dir=folder, output_dir=tmp_path / "m")
    state = json.loads((tmp_path / "m" / "preprocessing.json").read_text())
    assert state["roots"] == [str(tmp_path.resolve())] and state["allow_outside"] is False
    assert pred.predict(bad, base_dir=folder).loc[1, "missing_modalities"] == ""
    cfg["data"] = {"allow_outside": True, "seed": 0}
    Predictor(cfg).fit(bad, base_dir=folder)


def test_streamed_tables_are_confined_too(trained, tmp_path):
    folder, frame, _ = trained
    shutil.copy(folder / "wav" / "0.wav", tmp_path / "secret.wav")
    bad = frame.copy()
    bad.loc[5, "voice"] = str(tmp_path / "secret.wav")
    bad.to_csv(folder / "stream.csv", index=False)
    cfg = config_for(epochs=1)
    cfg["data"] |= {"streaming": True}
    with pytest.raises(DataError, match=r"stream.csv, row 5, column 'voice'.*outside the table's"):
        Predictor(cfg).fit(folder / "stream.csv")


def test_empty_tables(trained, tmp_path):
    folder, frame, model = trained
    frame.iloc[:0].to_csv(folder / "empty.csv", index=False)
    out = Predictor.load(model).predict(folder / "empty.csv")
    assert len(out) == 0
    assert list(out.columns) == ["label", "label_proba_cat", "label_proba_dog",
                                 "label_proba_eel", "missing_modalities"]  # fmt: skip
    res = runner.invoke(app, ["predict", str(model), str(folder / "empty.csv"), "-o", str(tmp_path / "p.csv")])  # fmt: skip
    assert res.exit_code == 0 and "wrote 0 predictions" in res.output, res.output
    assert len(pd.read_csv(tmp_path / "p.csv")) == 0
    res = runner.invoke(app, ["evaluate", str(model), str(folder / "empty.csv")])
    assert res.exit_code == 2 and "empty.csv: the table has no rows" in res.output, res.output
    with pytest.raises(DataError, match=r"empty\.csv: the table has no rows"):
        Predictor(config_for(epochs=1)).fit(folder / "empty.csv")
    cfg = config_for(epochs=1)
    cfg["data"] |= {"val_fraction": 0.0}  # no validation rows: trained without, not a crash
    assert "val" not in Predictor(cfg).fit(folder / "t.csv").metrics_


def test_report_shows_no_machine_paths(trained, tmp_path, monkeypatch):
    folder, _, model = trained
    opts = ReportOptions(max_rows=12, examples=1, repeats=2, robustness_rows=4)
    monkeypatch.chdir(tmp_path)  # the table is outside the working directory: its name only
    Predictor.load(model).report(tmp_path / "r.html", folder / "t.csv", opts)
    html = (tmp_path / "r.html").read_text()
    assert "Evaluation on t.csv (12 rows)" in html and "train: t.csv" in html
    assert str(folder) not in html and str(folder.resolve()) not in html
    monkeypatch.chdir(folder.parent)  # inside it: relative to the working directory
    Predictor.load(model).report(tmp_path / "r2.html", folder / "t.csv", opts)
    assert f"Evaluation on {folder.name}/t.csv (12 rows)" in (tmp_path / "r2.html").read_text()
