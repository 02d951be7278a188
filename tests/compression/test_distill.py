"""Knowledge distillation: the soft loss per task, the student really follows the teacher (with
alpha = 1 it learns the teacher's mapping from rows whose hard labels are shuffled), and the CLI
writes a smaller student with its comparison table."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from polymodal import Predictor
from polymodal.cli import app
from polymodal.compression.distill import soft_loss
from tests.tables import config_for, make_table


@pytest.mark.parametrize("task", ["multiclass", "binary", "multilabel", "regression"])
def test_soft_loss_is_smallest_when_the_student_matches(task):
    torch.manual_seed(0)
    teacher = torch.randn(8, 3)
    same = soft_loss(teacher.clone(), teacher, task, 2.0)
    other = soft_loss(torch.randn(8, 3), teacher, task, 2.0)
    assert float(same) < float(other)
    if task in ("multiclass", "regression"):
        assert float(same) == pytest.approx(0.0, abs=1e-6)


def _small(cfg: dict) -> dict:
    """The student: the same inputs with narrower image/audio encoders."""
    cfg["inputs"][1]["encoder"] = {"type": "image_cnn", "channels": [4], "out_dim": 8}
    cfg["inputs"][2]["encoder"] = {"type": "audio_cnn", "channels": [4], "out_dim": 8}
    return cfg


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distill")
    frame = make_table(folder, n=48)
    frame.to_csv(folder / "train.csv", index=False)
    pred = Predictor(config_for("concat", epochs=4)).fit(frame, val=frame, base_dir=folder)
    pred.save(folder / "teacher")
    return folder, frame, pred


def _agreement(alpha: float, folder, frame, teacher) -> float:
    shuffled = frame.copy()
    shuffled["label"] = np.random.default_rng(0).permutation(shuffled["label"].to_numpy())
    cfg = _small(config_for("concat", epochs=6))
    cfg["trainer"]["lr"] = 0.02
    student = Predictor(cfg).fit(
        shuffled, val=shuffled, base_dir=folder, teacher=teacher, kd_temperature=2.0, kd_alpha=alpha
    )
    mine = student.predict(frame, base_dir=folder)["label"]
    theirs = teacher.predict(frame, base_dir=folder)["label"]
    return float((mine == theirs).mean())


def test_student_learns_the_teachers_mapping_not_the_shuffled_labels(teacher):
    folder, frame, pred = teacher
    assert _agreement(1.0, folder, frame, pred) >= 0.9
    assert _agreement(0.0, folder, frame, pred) < 0.75  # hard labels only: shuffled noise


def test_cli_distill_writes_a_smaller_student(teacher, tmp_path):
    folder, _, _ = teacher
    student = tmp_path / "student.yaml"
    cfg = _small(config_for("concat", epochs=1))
    cfg["data"] = {"train": str(folder / "train.csv"), "seed": 0}
    student.write_text(json.dumps(cfg))  # JSON is YAML
    out = tmp_path / "small"
    res = CliRunner().invoke(
        app,
        ["compress", str(folder / "teacher"), "--data", str(folder / "train.csv"), "-o", str(out),
         "--method", "distill", "--student", str(student), "--temperature", "3", "--alpha", "0.7",
         "--rows", "8", "--repeats", "10"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads((out / "compression.json").read_text())
    rows = {r["variant"]: r for r in report["rows"]}
    assert rows["distilled_torch"]["params"] < rows["original_torch"]["params"] / 2
    assert report["details"] == {"temperature": 3.0, "alpha": 0.7, "best_epoch": 1}
    assert (out / "model.onnx").exists() and Predictor.load(out, backend="onnx")


def test_student_outputs_must_match_the_teacher(teacher, tmp_path):
    folder, frame, pred = teacher
    cfg = config_for("concat", epochs=1)
    cfg["outputs"] = [{"name": "label", "task": "multilabel"}]
    with pytest.raises(ValueError, match="same task"):
        Predictor(cfg).fit(frame, base_dir=folder, teacher=pred)
