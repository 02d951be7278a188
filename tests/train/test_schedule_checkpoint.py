import itertools

import pytest
import torch

from polymodal.train.checkpoint import load_checkpoint, save_checkpoint
from polymodal.train.optim import modality_dropout
from polymodal.train.schedule import lr_at


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant"])
def test_schedule_warmup_then_decay(schedule):
    lrs = [lr_at(s, 100, 1.0, 10, schedule) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    if schedule == "constant":
        assert lrs[-1] == 1.0
    else:
        assert lrs[-1] < 0.05 and all(a >= b for a, b in itertools.pairwise(lrs[10:]))


def test_unknown_schedule():
    with pytest.raises(ValueError, match="valid choices"):
        lr_at(50, 100, 1.0, 0, "step")


def test_checkpoint_round_trip_optimizer_state(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    save_checkpoint(
        tmp_path / "ck",
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "trainer": {"epoch": 3, "history": [{"a": 1.5}]},
        },
    )
    save_checkpoint(
        tmp_path / "ck",
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "trainer": {"epoch": 4, "history": []},
        },
    )  # overwrite atomically
    ck = load_checkpoint(tmp_path / "ck")
    assert ck["trainer"]["epoch"] == 4
    opt2 = torch.optim.AdamW(model.parameters(), lr=0.1)
    opt2.load_state_dict(ck["optimizer"])
    assert torch.equal(
        opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"]
    )
    assert not list(tmp_path.glob(".ck*"))  # no temp dirs left behind
    assert not list((tmp_path / "ck").glob("*.pt"))  # no pickle


def test_modality_dropout_keeps_one_present():
    masks = {
        "a": torch.ones(500, dtype=torch.bool),
        "b": torch.ones(500, dtype=torch.bool),
        "c": torch.arange(500) % 2 == 0,
    }
    out = modality_dropout(masks, 0.9, torch.Generator().manual_seed(0))
    stacked = torch.stack([out[k] for k in "abc"], 1)
    assert stacked.any(1).all()  # every row keeps one modality
    assert not (out["c"] & ~masks["c"]).any()  # never revives a missing modality
    assert stacked.float().mean() < 0.5  # but drops a lot at p=0.9
    assert modality_dropout(masks, 0.0) is masks


def test_pretrained_parameters_get_their_own_learning_rate_scale():
    from torch import nn

    from polymodal.config import TrainerConfig
    from polymodal.train.optim import make_optimizer

    class Pretrained(nn.Linear):
        pretrained = True

    model = nn.Sequential(nn.Linear(3, 4), Pretrained(4, 2))
    plain = make_optimizer(model, TrainerConfig(lr=1e-3))
    assert {g["lr_scale"] for g in plain.param_groups} == {1.0}
    tuned = make_optimizer(model, TrainerConfig(lr=1e-3, pretrained_lr=1e-5))
    scaled = [g for g in tuned.param_groups if g["lr_scale"] != 1.0]
    assert len(scaled) == 2 and all(abs(g["lr_scale"] - 0.01) < 1e-12 for g in scaled)
    assert {id(p) for g in scaled for p in g["params"]} == {id(p) for p in model[1].parameters()}
    decays = {(g["lr_scale"], g["weight_decay"] > 0) for g in tuned.param_groups}
    assert len(decays) == 4  # (base, pretrained) x (decayed matrices, undecayed biases)
