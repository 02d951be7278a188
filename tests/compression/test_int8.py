"""Dynamic int8: the compressed directory loads (PyTorch quantised at load, ONNX int8 graph),
predicts close to fp32, and the report has every column for both runtimes."""

from __future__ import annotations

import onnx
import pytest
import torch
from typer.testing import CliRunner

from polymodal import Predictor
from polymodal.cli import app
from polymodal.compression.measure import count_params
from tests.tables import config_for, make_table


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("int8")
    frame = make_table(folder, n=48)
    frame.to_csv(folder / "train.csv", index=False)
    cfg = config_for("gated", epochs=2)
    cfg["inputs"][0]["encoder"] = {"type": "bigru", "embed_dim": 16, "hidden": 16}  # a GRU too
    Predictor(cfg).fit(frame, base_dir=folder).save(folder / "model")
    return folder


def test_cli_int8_writes_a_loadable_quantised_model(trained):
    out = trained / "int8"
    res = CliRunner().invoke(
        app,
        ["compress", str(trained / "model"), "--data", str(trained / "train.csv"), "-o", str(out),
         "--rows", "8", "--repeats", "10"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "| int8_onnx |" in res.output and (out / "compression.json").exists()
    ops = {n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul"}, ops
    assert "Conv" in ops and "ConvInteger" not in ops, ops  # as in PyTorch: Linear/GRU only
    assert not (out / "model.fp32.onnx").exists()

    quantised = Predictor.load(out)
    kinds = {m._get_name() for m in quantised.artifact_.model.modules()}
    assert "DynamicQuantizedLinear" in kinds and "DynamicQuantizedGRU" in kinds, kinds
    fp32 = Predictor.load(trained / "model").predict(trained / "train.csv")
    proba = [c for c in fp32.columns if "_proba_" in c]
    for backend in ("torch", "onnx"):
        got = Predictor.load(out, backend=backend).predict(trained / "train.csv")
        assert (got[proba] - fp32[proba]).abs().to_numpy().max() < 0.1, backend
    params, nonzero = count_params(quantised.artifact_.model)
    assert 0 < nonzero <= params


def test_unknown_method_is_a_clear_error(trained):
    res = CliRunner().invoke(
        app, ["compress", str(trained / "model"), "--data", "x.csv", "-o", "o", "--method", "zip"]
    )
    assert res.exit_code == 2 and "method must be one of int8, prune, distill" in res.output


def test_count_params_sees_packed_int8_weights():
    from polymodal.compression.quantize import quantize_torch

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.GRU(3, 2))
    before, _ = count_params(model)
    after, _ = count_params(quantize_torch(model))
    weights = 4 * 3 + 6 * 3 + 6 * 2  # int8-packed: out of parameters(), still counted
    assert before == weights + 3 + 12 and weights <= after < before
