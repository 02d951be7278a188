"""Train on a tiny generated table with all five column types, save, load, predict."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from polymodal import Predictor
from polymodal.cli import app
from tests.tables import config_for, make_table


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    folder = tmp_path_factory.mktemp("table")
    frame = make_table(folder, n=60)
    frame.to_csv(folder / "train.csv", index=False)
    return folder, frame


def test_fit_save_load_predict(table, tmp_path):
    folder, _ = table
    cfg = config_for("concat", epochs=3)
    pred = Predictor(cfg).fit(folder / "train.csv", output_dir=tmp_path / "model")
    for name in (
        "config.yaml",
        "preprocessing.json",
        "model.safetensors",
        "metrics.json",
        "history.json",
    ):
        assert (tmp_path / "model" / name).exists(), name
    assert not (tmp_path / "model" / "checkpoints").exists()
    assert len(json.loads((tmp_path / "model" / "history.json").read_text())) == 3
    before = pred.predict(folder / "train.csv")
    loaded = Predictor.load(tmp_path / "model")
    after = loaded.predict(folder / "train.csv")
    pd.testing.assert_frame_equal(before, after)
    assert set(after["label"]) <= {"cat", "dog", "eel"}
    proba = loaded.predict_proba(folder / "train.csv")
    assert list(proba.columns) == ["label_proba_cat", "label_proba_dog", "label_proba_eel"]
    assert np.allclose(proba.sum(1).to_numpy(), 1.0, atol=1e-5)
    # rows with no size value report it as a missing modality
    assert (after["missing_modalities"] != "").any()
    report = loaded.evaluate(folder / "train.csv")
    assert 0.0 <= report["label"]["accuracy"] <= 1.0


def test_learns_the_signal(table, tmp_path):
    folder, _ = table
    cfg = config_for("concat", epochs=8)
    pred = Predictor(cfg).fit(folder / "train.csv")
    assert pred.evaluate(folder / "train.csv")["label"]["accuracy"] > 0.8


def test_missing_image_masked_not_crash(table, tmp_path):
    folder, frame = table
    frame = frame.copy()
    frame.loc[0, "photo"] = None  # missing cell: masked
    frame.loc[1, "review"] = ""
    pred = Predictor(config_for("attention", epochs=1)).fit(frame, val=frame, base_dir=folder)
    out = pred.predict(frame, base_dir=folder)
    assert "photo" in out.loc[0, "missing_modalities"]
    assert "review" in out.loc[1, "missing_modalities"]


def test_multitask_outputs(table):
    folder, frame = table
    cfg = config_for("gated", epochs=2)
    cfg["outputs"] = [
        {"name": "label", "task": "multiclass"},
        {"name": "flag", "task": "binary", "class_weights": "balanced"},
        {"name": "score", "task": "regression", "weight": 0.5},
    ]
    pred = Predictor(cfg).fit(frame, val=frame, test=frame, base_dir=folder)
    test = pred.metrics_["test"]
    assert {"label", "flag", "score"} <= set(test)
    assert "rmse" in test["score"] and "roc_auc" in test["flag"]
    out = pred.predict(frame, base_dir=folder)
    assert {"label", "flag", "score", "flag_proba_1"} <= set(out.columns)


def test_resume_after_interrupt_matches_uninterrupted(table, tmp_path, monkeypatch):
    folder, frame = table
    cfg = config_for("concat", epochs=3)
    full = Predictor(cfg).fit(frame, val=frame, output_dir=tmp_path / "full", base_dir=folder)

    import polymodal.train.loop as loop

    real = loop._log_epoch

    def crash_after_two(row, c):
        real(row, c)
        if row["epoch"] == 2:
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(loop, "_log_epoch", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        Predictor(cfg).fit(frame, val=frame, output_dir=tmp_path / "crashed", base_dir=folder)
    assert (tmp_path / "crashed" / "checkpoints" / "last" / "state.json").exists()
    monkeypatch.setattr(loop, "_log_epoch", real)
    resumed = Predictor(cfg).fit(
        frame, val=frame, output_dir=tmp_path / "crashed", resume=True, base_dir=folder
    )
    assert len(resumed.artifact_.history) == 3
    a = full.artifact_.model.state_dict()
    b = resumed.artifact_.model.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)


def test_cli_init_train_predict_evaluate_info(table, tmp_path):
    folder, _ = table
    runner = CliRunner()
    res = runner.invoke(app, ["info"])
    assert res.exit_code == 0 and "fusion concat" in res.output and "encoder minilm" in res.output
    cfg_path = tmp_path / "config.yaml"
    res = runner.invoke(  # age and size give the synthetic label away: kept on purpose
        app, ["init", str(folder / "train.csv"), "--target", "label", "-o", str(cfg_path),
              "--keep", "age", "--keep", "size"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "left out flag" in " ".join(res.output.split())  # another target: a leak
    text = cfg_path.read_text()
    for column in ("review", "photo", "voice", "age"):
        assert column in text
    res = runner.invoke(app, ["config", str(cfg_path)])
    assert res.exit_code == 0 and "weight_decay" in res.output
    model = tmp_path / "m"
    res = runner.invoke(
        app,
        [
            "train",
            str(cfg_path),
            "-o",
            str(model),
            "--quiet",
            "--set",
            "trainer.epochs=1",
            "--set",
            "trainer.batch_size=32",
        ],
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app, ["predict", str(model), str(folder / "train.csv"), "-o", str(tmp_path / "p.csv")]
    )
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(tmp_path / "p.csv")) == 60
    res = runner.invoke(app, ["evaluate", str(model), str(folder / "train.csv"), "--robustness"])
    assert res.exit_code == 0 and "accuracy" in res.output, res.output
    rob = json.loads((model / "robustness.json").read_text())
    missing = {r["modality"] for r in rob["rows"] if r["condition"] == "missing"}
    assert missing == {"review", "photo", "voice", "numeric", "categorical"}  # as `init` named them
    assert (model / "robustness.png").stat().st_size > 1000 and (model / "robustness.md").exists()
    res = runner.invoke(app, ["info", str(model)])
    assert res.exit_code == 0 and "params" in res.output
