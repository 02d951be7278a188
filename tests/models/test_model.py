"""Every fusion x every head assembled into a MultimodalModel, and every encoder inside a model:
output shapes, backward pass, missing modalities and save -> load."""

import pytest
import torch
from safetensors.torch import load_file, save_file

import polymodal.models  # noqa: F401  (registers every component)
from polymodal import registry
from polymodal.config import load_config
from polymodal.models import MODALITY_SUFFIX, build_model

B = 6
SPECS = {
    "text": {"vocab_size": 50, "pad_id": 0},
    "num": {"in_features": 3},
    "cat": {"cardinalities": [5, 4]},
}
NUM_OUTPUTS = {"binary": 1, "multiclass": 4, "multilabel": 3, "regression": 1}
SMALL = {"tensor": {"dim": 4}}


def _config(fusion: str, task: str) -> dict:
    return {
        "inputs": [
            {"name": "text", "type": "text", "encoder": {"type": "bow", "embed_dim": 8}},
            {"name": "num", "type": "numeric", "encoder": {"type": "mlp"}},
            {"name": "cat", "type": "categorical", "encoder": {"type": "embedding"}},
        ],
        "fusion": {"type": fusion, **SMALL.get(fusion, {})},
        "outputs": [{"name": "y", "task": task}],
    }


def _batch(seed: int = 0) -> tuple[dict, dict, dict]:
    g = torch.Generator().manual_seed(seed)
    features = {
        "text": torch.randint(1, 50, (B, 7), generator=g),
        "num": torch.randn(B, 3, generator=g),
        "cat": torch.randint(0, 4, (B, 2), generator=g),
    }
    masks = {k: torch.ones(B, dtype=torch.bool) for k in features}
    masks["text"][0] = False  # row 0 misses its text
    masks["num"][1] = masks["cat"][1] = masks["text"][1] = False  # row 1 misses everything
    return features, masks, {}


def _target(task: str) -> torch.Tensor:
    if task == "multiclass":
        return torch.arange(B) % 4
    if task == "multilabel":
        return (torch.arange(B * 3).reshape(B, 3) % 2).float()
    return (torch.arange(B) % 2).float()


@pytest.mark.parametrize("task", [t for t in registry.names("head") if t in NUM_OUTPUTS])
@pytest.mark.parametrize("fusion", registry.names("fusion") or ["concat"])
def test_fusion_x_head(fusion, task, tmp_path):

    cfg = load_config(_config(fusion, task))
    torch.manual_seed(0)
    model = build_model(cfg, SPECS, {"y": NUM_OUTPUTS[task]})
    features, masks, _ = _batch()
    out = model(features, masks)
    assert out["y"].shape == (B, NUM_OUTPUTS[task])
    assert torch.isfinite(out["y"]).all()
    if model.decision_level:
        assert out["y" + MODALITY_SUFFIX].shape[:2] == (B, 3)
    loss, parts = model.loss(out, {"y": _target(task)}, masks, {"y": 1.0})
    loss.backward()
    assert torch.isfinite(loss) and "y" in parts
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    # a masked modality's values do not matter
    model.eval()
    changed = dict(features, text=torch.randint(1, 50, (B, 7)))
    a, b = model(features, masks)["y"], model(changed, masks)["y"]
    assert torch.allclose(a[:2], b[:2], atol=1e-6)
    # save -> load gives identical predictions
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "m.safetensors"
    )
    again = build_model(cfg, SPECS, {"y": NUM_OUTPUTS[task]})
    again.load_state_dict(load_file(tmp_path / "m.safetensors"))
    again.eval()
    assert torch.equal(model(features, masks)["y"], again(features, masks)["y"])


@pytest.mark.parametrize("fusion", registry.names("fusion") or ["concat"])
def test_fusion_x_caption_head(fusion):
    """The caption decoder reads any fusion's output (per-modality tokens for late fusion)."""
    cfg = _config(fusion, "caption")
    cfg["outputs"][0]["head"] = {"d_model": 16, "ff_dim": 32, "max_length": 4}
    torch.manual_seed(0)
    model = build_model(load_config(cfg), SPECS, {"y": 9})
    features, masks, _ = _batch()
    out = model(features, masks)
    captions = torch.tensor([[2, 5, 6, 3]] * B)
    loss, _ = model.loss(out, {"y": captions}, masks, {"y": 1.0})
    loss.backward()
    assert torch.isfinite(loss)
    assert model.heads["y"].decode(out["y"].detach(), method="greedy")["pred"].shape[0] == B


def test_retrieval_head_reads_its_pair_not_the_fusion():
    cfg = _config("attention", "retrieval")
    cfg["outputs"] = [{"name": "m", "task": "retrieval", "pair": ["text", "num"]}]
    model = build_model(load_config(cfg), SPECS, {"m": 0}).eval()
    assert not model.uses_fusion  # no head reads the fused vector: fusion is skipped
    features, masks, _ = _batch()
    out = model(features, masks)["m"]  # (B, 2, dim), zeros where a side is missing
    assert out.shape == (B, 2, 256) and out[0, 0].abs().sum() == 0 and out[0, 1].norm() > 0.99
    changed = dict(features, cat=torch.randint(0, 4, (B, 2)))
    assert torch.equal(model(changed, masks)["m"], out)  # an input outside the pair is unread


@pytest.mark.parametrize(
    ("where", "name"),
    [("output", "forward"), ("output", "type"), ("input", "to"), ("input", "a.b")],
)
def test_names_a_model_cannot_hold_are_refused_up_front(where, name):
    """An output named after a module attribute (a target column "forward" or "type") used to
    fail deep in model building: KeyError "attribute 'forward' already exists"."""
    from polymodal import Predictor

    cfg = _config("concat", "multiclass")
    if where == "output":
        cfg["outputs"][0]["name"] = name
    else:
        cfg["inputs"][1] |= {"name": name, "columns": ["n1"]}
    with pytest.raises(ValueError, match=rf"{where} {name!r}: not usable as a name"):
        Predictor(cfg)
    cfg = load_config(cfg)
    specs = {i.name: SPECS.get(i.name, SPECS["num"]) for i in cfg.inputs}
    with pytest.raises(ValueError, match="not usable as a name"):
        build_model(cfg, specs, {o.name: 4 for o in cfg.outputs})
