"""ONNX export: every registered encoder and every fusion method exports with parity <= 1e-4
(rows as they are, batch 1, each modality masked, other sequence lengths); the ONNX backend of
the Predictor predicts what PyTorch predicts; a parity failure is loud; the CLI writes the file."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import polymodal.models  # noqa: F401  (registers every component)
from polymodal import Predictor, registry
from polymodal.cli import app
from polymodal.export import onnx as ox
from polymodal.fusion.concat import ConcatFusion
from polymodal.models import MultimodalModel
from tests.encoders.test_encoders import NAMES, build
from tests.tables import config_for, make_table

ATOL = 1e-4


def _single_encoder_model(name: str) -> tuple[MultimodalModel, torch.Tensor]:
    torch.manual_seed(0)
    encoder, x = build(name)
    head = registry.build("head", {"type": "multiclass"}, in_dim=encoder.out_dim + 1, num_outputs=3)
    model = MultimodalModel({"x": encoder}, ConcatFusion({"x": encoder.out_dim}), {"y": head})
    return model.eval(), x


@pytest.mark.parametrize("name", NAMES)
def test_every_encoder_exports_with_parity(name, tmp_path):
    model, x = _single_encoder_model(name)
    mask = torch.ones(len(x), dtype=torch.bool)
    mask[-1] = False  # the last row is the empty / missing one
    text = {"x"} if x.dtype == torch.long and name != "embedding" else set()
    report = ox.export_checked(model, ({"x": x}, {"x": mask}), tmp_path / "m.onnx", text, ATOL)
    assert report["max_abs_diff"] <= ATOL
    assert {"rows", "batch1", "masked:x"} | ({"shorter", "half"} if text else set()) == set(
        report["by_case"]
    )
    assert report["exporter"] in ox.EXPORTERS and (tmp_path / "m.onnx").exists()


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx_table")
    frame = make_table(folder, n=36)
    frame.to_csv(folder / "train.csv", index=False)
    return folder, frame


@pytest.mark.parametrize("fusion", registry.names("fusion"))
def test_every_fusion_onnx_backend_predicts_like_torch(fusion, table, tmp_path):
    folder, frame = table
    pred = Predictor(config_for(fusion, epochs=1)).fit(frame, base_dir=folder)
    pred.save(tmp_path / "m")
    report = pred.export_onnx(folder / "train.csv", tmp_path / "m" / "model.onnx", rows=16)
    assert report["max_abs_diff"] <= ATOL
    assert {"rows", "batch1", "masked:photo", "masked:review", "masked:voice"} <= set(
        report["by_case"]
    )
    rows = frame.copy()
    rows.loc[rows.index[:3], "photo"] = None  # missing image cells go through the masks
    torch_out = Predictor.load(tmp_path / "m").predict(rows, base_dir=folder)
    onnx_out = Predictor.load(tmp_path / "m", backend="onnx").predict(rows, base_dir=folder)
    proba = [c for c in torch_out.columns if "_proba_" in c]
    assert (torch_out[proba] - onnx_out[proba]).abs().to_numpy().max() <= ATOL
    assert (torch_out["label"] == onnx_out["label"]).all()
    assert onnx_out["missing_modalities"].iloc[:2].tolist() == ["photo,size", "photo"]


def test_parity_failure_is_loud_and_removes_the_file(table, tmp_path, monkeypatch):
    folder, frame = table
    pred = Predictor(config_for("concat", epochs=1)).fit(frame, base_dir=folder)
    real_call = ox.OnnxModel.__call__

    def off_by_a_bit(self, features, masks):
        return {k: v + 1e-3 for k, v in real_call(self, features, masks).items()}

    monkeypatch.setattr(ox.OnnxModel, "__call__", off_by_a_bit)
    monkeypatch.setattr(ox, "EXPORTERS", ("trace",))  # the slower fallback fails the same way
    target = tmp_path / "model.onnx"
    with pytest.raises(
        ox.ParityError, match=r"trace: differs from PyTorch by 0\.001 \(> atol 0\.0001\)"
    ):
        pred.export_onnx(frame, target, base_dir=folder)
    assert not target.exists()


def test_cli_export_then_onnx_backend(table, tmp_path):
    folder, frame = table
    model_dir = tmp_path / "m"
    Predictor(config_for("gated", epochs=1)).fit(frame, base_dir=folder).save(model_dir)
    with pytest.raises(FileNotFoundError, match="polymodal export"):
        Predictor.load(model_dir, backend="onnx")
    res = CliRunner().invoke(app, ["export", str(model_dir), "--data", str(folder / "train.csv")])
    assert res.exit_code == 0, res.output
    assert (model_dir / "model.onnx").exists() and (model_dir / "onnx_parity.json").exists()
    res = CliRunner().invoke(app, ["export", str(model_dir)])  # no table anywhere
    assert res.exit_code == 2 and "--data" in res.output
    with pytest.raises(ValueError, match="backend must be"):
        Predictor.load(model_dir, backend="tflite")
    out = Predictor.load(model_dir, backend="onnx").predict(
        pd.read_csv(folder / "train.csv"), base_dir=folder
    )
    assert len(out) == len(frame)
