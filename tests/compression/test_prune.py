"""Pruning: magnitude pruning reaches its sparsity over trainable layers only and is made
permanent; structured pruning really shrinks layers, keeps the model's outputs, and the smaller
shapes come back from the saved weights; every fusion method prunes, saves and reloads; the CLI
fine-tunes and measures."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from polymodal import Predictor, registry
from polymodal.cli import app
from polymodal.compression import prune as P
from polymodal.layers.conv import ConvStack
from polymodal.layers.mlp import MLP
from tests.tables import config_for, make_table


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        ConvStack(1, [8, 16, 8], pool="global"),
        MLP(8, [32, 16], 3),
    ).eval()


def test_magnitude_reaches_the_sparsity_and_skips_frozen_layers():
    net = _net()
    frozen = net[1].net[0]
    frozen.weight.requires_grad_(False)
    before = frozen.weight.clone()
    zeroed = P.magnitude(net, 0.6)
    P.make_permanent(net)
    assert P.sparsity(net) == pytest.approx(0.6, abs=0.01) and zeroed > 0
    assert torch.equal(frozen.weight, before)  # a frozen layer keeps every weight
    assert not any(k.endswith(("_orig", "_mask")) for k in net.state_dict())


def test_structured_shrinks_layers_and_fit_shapes_restores_them():
    net = _net()
    x = torch.randn(4, 1, 12, 12)
    before = sum(p.numel() for p in net.parameters())
    done = P.structured(net, 0.5)
    # conv 8->16->8 chain: the first two convs lose half their channels (the last feeds pooling);
    # MLP 8->32->16->3: both hidden layers lose half their units
    assert [d["after"] for d in done] == [4, 8, 16, 8]
    assert sum(p.numel() for p in net.parameters()) < before / 2
    out = net(x)
    assert out.shape == (4, 3)
    fresh = _net()
    state = net.state_dict()
    assert P.fit_shapes(fresh, state) == 8  # 4 producers + their BatchNorms / consumers
    fresh.load_state_dict(state)
    assert torch.allclose(fresh.eval()(x), out)


def test_structured_keeps_the_most_important_units():
    mlp = MLP(4, [6], 2).eval()
    with torch.no_grad():
        mlp.net[0].weight.mul_(1e-3)
        mlp.net[0].weight[[1, 4]] = 1.0  # units 1 and 4 carry almost everything
    x = torch.randn(16, 4)
    ref = mlp(x)
    P.structured(mlp, 0.67)
    assert mlp.net[0].out_features == 2 and mlp.net[3].in_features == 2
    assert torch.allclose(mlp(x), ref, atol=0.05)


@pytest.mark.parametrize("amount", [0.0, 1.0])
def test_amount_must_be_a_fraction(amount):
    with pytest.raises(ValueError, match="fraction in"):
        P.magnitude(_net(), amount)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prune")
    frame = make_table(folder, n=36)
    frame.to_csv(folder / "train.csv", index=False)
    return folder, frame


@pytest.mark.parametrize("fusion", registry.names("fusion"))
def test_every_fusion_prunes_saves_and_reloads(fusion, table, tmp_path):
    from polymodal.compression.compress import prune

    folder, frame = table
    Predictor(config_for(fusion, epochs=1)).fit(frame, base_dir=folder).save(tmp_path / "m")
    for method in P.METHODS:
        info = prune(tmp_path / "m", tmp_path / method, method, 0.5)
        assert info["method"] == method
        pruned = Predictor.load(tmp_path / method)
        got = pruned.predict(frame, base_dir=folder)
        assert got["label"].isin(["cat", "dog", "eel"]).all()
        params = sum(p.numel() for p in pruned.artifact_.model.parameters())
        full = sum(p.numel() for p in Predictor.load(tmp_path / "m").artifact_.model.parameters())
        assert params < full if method == "structured" else info["sparsity"] > 0.4


def test_cli_structured_prune_with_fine_tuning(table, tmp_path):
    folder, _ = table
    cfg = config_for("concat", epochs=2)
    cfg["data"] = {"train": str(folder / "train.csv"), "seed": 0}
    Predictor(cfg).fit().save(tmp_path / "m")
    out = tmp_path / "pruned"
    res = CliRunner().invoke(
        app,
        ["compress", str(tmp_path / "m"), "--data", str(folder / "train.csv"), "-o", str(out),
         "--method", "prune", "--pruning", "structured", "--amount", "0.5", "--epochs", "1",
         "--rows", "8", "--repeats", "10"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "| structured50_ft1_torch |" in res.output and "| original_onnx |" in res.output
    report = json.loads((out / "compression.json").read_text())
    rows = {r["variant"]: r for r in report["rows"]}
    assert rows["structured50_ft1_torch"]["params"] < rows["original_torch"]["params"]
    assert report["details"]["finetune_epochs"] == 1
    history = json.loads((out / "history.json").read_text())
    assert history[-1]["phase"] == "prune_finetune"
    onnx_pred = Predictor.load(out, backend="onnx").predict(folder / "train.csv")
    torch_pred = Predictor.load(out).predict(folder / "train.csv")
    proba = [c for c in torch_pred.columns if "_proba_" in c]
    assert (onnx_pred[proba] - torch_pred[proba]).abs().to_numpy().max() < 1e-4
