"""Gradient accumulation and bf16 mixed precision from the config."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from polymodal import Predictor
from tests.train.test_distributed import config, write_tables


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    return write_tables(tmp_path_factory.mktemp("acc"))


def test_two_accumulated_batches_of_8_equal_one_batch_of_16(tables, tmp_path):
    train, val = tables
    runs = {}
    for name, batch, accum in (("big", 16, 1), ("accumulated", 8, 2)):
        cfg = config(False, epochs=2)
        cfg["trainer"].update(batch_size=batch, grad_accumulation=accum)
        Predictor(cfg).fit(train, val=val, output_dir=tmp_path / name)
        runs[name] = load_file(str(tmp_path / name / "model.safetensors"))
    for key, value in runs["big"].items():
        torch.testing.assert_close(runs["accumulated"][key], value, atol=1e-5, rtol=1e-5)


def test_bf16_mixed_precision_trains(tables, tmp_path):
    train, val = tables
    cfg = config(True, epochs=2)
    cfg["trainer"]["mixed_precision"] = "bf16"
    pred = Predictor(cfg).fit(train, val=val, output_dir=tmp_path / "bf16")
    history = json.loads((tmp_path / "bf16" / "history.json").read_text())
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert pred.metrics_["val"]["label"]["accuracy"] > 0.5


class Probe(torch.nn.Module):
    """Records the dtype its layer computes in."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.seen: list[torch.dtype] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x)
        self.seen.append(y.dtype)
        return y


@pytest.mark.parametrize("first", ["no", "bf16"])
def test_bf16_autocast_runs_inside_the_prepared_model(first):
    """Also after an earlier fit in the same process asked for another precision."""
    from polymodal.config import TrainerConfig
    from polymodal.train.distributed import accelerator

    accelerator(TrainerConfig(mixed_precision=first, device="cpu"))
    probe = Probe()
    acc = accelerator(TrainerConfig(mixed_precision="bf16", device="cpu"))
    out = acc.prepare(probe)(torch.randn(2, 4))
    assert probe.seen == [torch.bfloat16] and out.dtype == torch.float32  # outputs back in fp32
