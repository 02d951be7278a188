"""The newcomer path through the CLI: `polymodal init` on every shared table and on generated
ones, `polymodal fit` from a table to a model, config, metrics and report in one command, the
time limit, presets, and progress lines where output is not a terminal."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from polymodal import Predictor
from polymodal.cli import app
from polymodal.data.presets import apply_preset, starter
from tests.tables import config_for, make_table

runner = CliRunner()
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"

# every table of ../shared/data with its target; tables whose only feature is a kind of column no
# input type reads (COCO's annotation records) must fail with one line that says so
TABLES = [
    ("avmnist/val.parquet", "label", 0),
    ("clothing/reviews.csv", "Recommended IND", 0),
    ("clothing/reviews.csv", "Rating", 0),
    ("twemoji/emoji.json", "category", 0),
    ("watch/recordings.csv", "exercise", 0),  # signal: paths to per-recording CSV files
    ("watch/recordings.parquet", "exercise", 0),  # signal: inline lists of 6-channel steps
    ("uea/JapaneseVowels/train.parquet", "label", 0),
    ("uea/SelfRegulationSCP1/train.parquet", "label", 0),
    ("coco_mini/annotations/captions_val2017.json", "caption", 2),
]
SERIES = {"watch": "signal", "uea": "series"}  # the time-series column of those tables


@pytest.mark.parametrize(("table", "target", "code"), TABLES)
def test_init_on_every_shared_table(tmp_path, table, target, code):
    path = SHARED / table
    if not path.exists():
        pytest.skip(f"{path} not here")
    out = tmp_path / "config.yaml"
    result = runner.invoke(app, ["init", str(path), "--target", target, "-o", str(out)])
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    if code:
        lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and "Traceback" not in result.output
        return
    cfg = yaml.safe_load(out.read_text())
    assert target not in str(cfg["inputs"])
    if table.startswith("clothing"):
        other = "Rating" if target == "Recommended IND" else "Recommended IND"
        assert other in cfg["dropped"] and other not in str(cfg["inputs"])
        assert "Clothing ID" in str(cfg["inputs"])  # an item id: embedded as a category
    if table.split("/")[0] in SERIES:
        series = [i for i in cfg["inputs"] if i["type"] == "timeseries"]
        assert [i["name"] for i in series] == [SERIES[table.split("/")[0]]]
    from polymodal import Predictor as P

    P(out)  # the written config validates (components and options too)


def test_init_then_train_with_list_overrides(tmp_path):
    frame = make_table(tmp_path, n=36)
    frame["row"] = range(len(frame))
    frame.to_csv(tmp_path / "t.csv", index=False)
    cfg = tmp_path / "c.yaml"
    result = runner.invoke(
        app, ["init", str(tmp_path / "t.csv"), "-t", "label", "-o", str(cfg), "--preset", "fast",
              "--drop", "score", "--drop", "flag", "--keep", "age", "--keep", "size"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "row" in yaml.safe_load(cfg.read_text())["dropped"]  # a row identifier
    assert "left out row" in result.output.replace("  ", " ")
    assert "kept on request" in result.output  # age and size give the synthetic label away
    result = runner.invoke(
        app, ["train", str(cfg), "-o", str(tmp_path / "m"), "--quiet",
              "--set", "trainer.epochs=1", "--set", "inputs.numeric.columns=[age]",
              "--set", "inputs.review.encoder.embed_dim=8", "--drop-input", "voice"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = Predictor.load(tmp_path / "m").config
    assert [i.name for i in saved.inputs if i.name == "voice"] == []
    assert saved.inputs[0].encoder["embed_dim"] == 8
    bad = runner.invoke(app, ["train", str(cfg), "--set", "inputs.nope.encoder.type=bow"])
    assert bad.exit_code == 2 and "no item named 'nope'" in bad.output


def test_fit_one_command(tmp_path):
    frame = make_table(tmp_path, n=60).drop(columns=["score", "label"])
    frame.to_csv(tmp_path / "t.csv", index=False)
    out = tmp_path / "m"
    result = runner.invoke(
        app, ["fit", str(tmp_path / "t.csv"), "--target", "flag", "--preset", "fast", "-o",
              str(out), "--time-limit", "5m", "--set", "trainer.epochs=2", "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (out / "report.html").exists() and (out / "config.yaml").exists()
    saved = Predictor.load(out)
    assert saved.config.preset == "fast" and saved.config.trainer.time_limit == 300
    assert saved.config.trainer.monitor == "flag.roc_auc"  # binary: ranked by ROC-AUC
    assert "roc_auc" in saved.metrics_["test"]["flag"]
    bad = runner.invoke(app, ["fit", str(tmp_path / "t.csv"), "-t", "nope"])
    assert bad.exit_code == 2 and "'nope' is not in the table" in bad.output
    bad = runner.invoke(app, ["fit", str(tmp_path / "t.csv"), "-t", "flag", "--time-limit", "soon"])
    assert bad.exit_code == 2 and "--time-limit" in bad.output


def test_time_limit_keeps_the_best_epoch_so_far(tmp_path):
    frame = make_table(tmp_path, n=48)
    cfg = config_for("concat", epochs=50)
    cfg["trainer"]["time_limit"] = 0.01
    pred = Predictor(cfg).fit(frame, base_dir=tmp_path)
    assert len(pred.artifact_.history) == 1 and pred.metrics_["best_epoch"] == 1


def test_progress_lines_outside_a_terminal(tmp_path, monkeypatch, caplog):
    import importlib

    files = importlib.import_module("polymodal.data.preprocess.files")
    evaluate = importlib.import_module(
        "polymodal.evaluation.evaluate"
    )  # the module, not the function
    monkeypatch.setenv("POLYMODAL_PROGRESS_EVERY", "0")  # a line after every step
    monkeypatch.setattr(files, "PROGRESS_ROWS", 1)  # as if the table were large
    monkeypatch.setattr(evaluate, "PROGRESS_ROWS", 1)
    frame = make_table(tmp_path, n=80)
    cfg = config_for("concat", epochs=1)
    cfg["trainer"]["progress"] = True
    with caplog.at_level(logging.INFO, logger="polymodal"):
        pred = Predictor(cfg).fit(frame, base_dir=tmp_path)
        pred.predict(frame, base_dir=tmp_path)
    lines = [r.getMessage() for r in caplog.records if r.name == "polymodal.progress"]
    assert any(ln.startswith("epoch 1/1: ") and "batches/s" in ln for ln in lines), lines
    assert any(ln.startswith("photo: reading files: 64/") for ln in lines), lines
    assert any(ln.startswith("predicting: 80/80 rows") for ln in lines), lines


def test_presets_read_the_files(tmp_path):
    import numpy as np
    import soundfile as sf
    from PIL import Image

    rows = []
    for i in range(40):
        grey, photo = f"g{i}.png", f"p{i}.jpg"
        Image.fromarray(np.full((28, 28), i * 5, dtype=np.uint8)).save(tmp_path / grey)
        Image.new("RGB", (320, 240), (i * 5, 10, 10)).save(tmp_path / photo)
        sf.write(tmp_path / f"a{i}.wav", np.zeros(int(8000 * (0.8 + i / 100)), np.float32), 8000)
        rows.append({"digit": grey, "photo": photo, "voice": f"a{i}.wav", "y": i % 2})
    frame = pd.DataFrame(rows)
    best = starter(frame, "y", tmp_path, "best").config
    by_name = {i["name"]: i for i in best["inputs"]}
    assert by_name["digit"]["encoder"]["type"] == "image_cnn"  # small grey: trained from scratch
    assert by_name["digit"]["preprocessing"] == {"image_size": 28, "channels": 1, "augment": False}
    assert by_name["photo"]["encoder"]["type"] == "efficientnet_lite"
    audio = by_name["voice"]["preprocessing"]
    assert audio["sample_rate"] == 8000 and audio["max_seconds"] == 1.5 and audio["n_fft"] == 200
    assert best["trainer"]["modality_dropout"] == 0.3  # images and audio: modality dropout
    fast = apply_preset(starter(frame, "y", tmp_path, None).config, frame, tmp_path, "fast")
    assert fast["inputs"][0]["encoder"]["type"] == "image_cnn" and fast["trainer"]["epochs"] == 3
    # a hidden layer in the head over frozen pretrained features only
    assert best["outputs"][0]["head"]["hidden"] == 128 and fast["outputs"][0]["head"]["hidden"] == 0
    with pytest.raises(ValueError, match="unknown preset"):
        apply_preset(best, frame, tmp_path, "huge")


def test_presets_peek_only_where_training_may_read(tmp_path):
    """``init`` looks at file headers only inside the table's folder (or with
    ``data.allow_outside``), the same rule training follows."""
    from PIL import Image

    from polymodal.data.paths import FileAccess
    from polymodal.data.presets import image_facts

    (tmp_path / "outside").mkdir()
    (tmp_path / "table").mkdir()
    Image.new("RGB", (320, 240)).save(tmp_path / "outside" / "p.jpg")
    column = pd.Series(["../outside/p.jpg"] * 4)
    assert image_facts(column, tmp_path / "table") == {"side": 64, "grey": False}  # not opened
    opened = image_facts(column, tmp_path / "table", FileAccess(allow_outside=True))
    assert opened == {"side": 320, "grey": False}
    frame = pd.DataFrame({"photo": ["../outside/p.jpg"] * 40, "y": [0, 1] * 20})
    cfg = starter(frame, "y", tmp_path / "table", None).config
    allowed = apply_preset(
        {**cfg, "data": {"allow_outside": True}}, frame, tmp_path / "table", "best"
    )
    assert allowed["inputs"][0]["encoder"]["type"] == "efficientnet_lite"  # 320 px: pretrained
