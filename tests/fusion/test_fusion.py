"""Every registered fusion method: shape, finiteness with missing modalities, masked inputs have
no effect, backward, save/load; decision-level combination rules."""

import pytest
import torch
from safetensors.torch import load_file, save_file

import polymodal.fusion  # noqa: F401
from polymodal import registry
from polymodal.fusion.late import RULES

DIMS = {"c": 3, "a": 5, "b": 7}
B = 5


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = {k: torch.randn(B, d, generator=g) for k, d in DIMS.items()}
    masks = {
        "a": torch.tensor([1, 1, 0, 0, 1]).bool(),
        "b": torch.tensor([1, 0, 1, 0, 1]).bool(),
        "c": torch.tensor([1, 1, 1, 0, 0]).bool(),  # row 3: everything missing
    }
    return feats, masks


@pytest.mark.parametrize("name", registry.names("fusion"))
def test_fusion_contract(name, tmp_path):
    torch.manual_seed(0)
    fusion = registry.build("fusion", {"type": name}, in_dims=DIMS).eval()
    feats, masks = _inputs()
    out = fusion(feats, masks)
    expected = (
        (B, len(DIMS), fusion.out_dim)
        if getattr(fusion, "decision_level", False)
        else (B, fusion.out_dim)
    )
    assert out.shape == expected and torch.isfinite(out).all()
    # masked values never leak into the output (decision-level: only present tokens are combined)
    noisy = {
        k: torch.where(masks[k].unsqueeze(-1), v, torch.randn_like(v) * 100)
        for k, v in feats.items()
    }
    if getattr(fusion, "decision_level", False):
        present = fusion.mask_stack(masks).bool()
        a, b = fusion(feats, masks), fusion(noisy, masks)
        assert torch.allclose(a[present], b[present])
    else:
        assert torch.allclose(fusion(feats, masks), fusion(noisy, masks), atol=1e-5)
    # backward reaches the inputs and the parameters
    fusion.train()
    leaf = {k: v.clone().requires_grad_(True) for k, v in feats.items()}
    fusion(leaf, masks).pow(2).sum().backward()
    assert all(leaf[k].grad is not None and leaf[k].grad[masks[k]].abs().sum() > 0 for k in DIMS)
    params = list(fusion.parameters())
    assert not params or any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    # save -> load
    fusion.eval()
    save_file(
        {k: v.contiguous() for k, v in fusion.state_dict().items()}, tmp_path / "f.safetensors"
    )
    again = registry.build("fusion", {"type": name}, in_dims=DIMS).eval()
    again.load_state_dict(load_file(tmp_path / "f.safetensors"))
    assert torch.equal(fusion(feats, masks), again(feats, masks))


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize(
    ("task", "c"), [("multiclass", 4), ("binary", 1), ("multilabel", 3), ("regression", 1)]
)
def test_late_combination(rule, task, c):
    fusion = registry.build("fusion", {"type": "late", "rule": rule}, in_dims=DIMS)
    _, masks = _inputs()
    logits = torch.randn(B, len(DIMS), c)
    out = fusion.combine(logits, fusion.mask_stack(masks), task)
    assert out.shape == (B, c) and torch.isfinite(out).all()
    # a row with a single present modality gets that modality's decision
    row = 4  # a and b present
    single = {k: torch.zeros(B, dtype=torch.bool) for k in DIMS}
    single["a"][row] = True
    out1 = fusion.combine(logits, fusion.mask_stack(single), task)[row]
    own = logits[row, 0]
    if task == "multiclass":
        assert out1.argmax() == own.argmax()
    elif task == "regression":
        assert torch.allclose(out1, own)
    else:
        assert torch.equal(out1 > 0, own > 0)


def test_product_rule_is_sum_of_log_probabilities():
    fusion = registry.build("fusion", {"type": "late", "rule": "product"}, in_dims={"a": 2, "b": 2})
    p = torch.tensor([[[0.7, 0.3], [0.2, 0.8]]])  # (1, M=2, C=2)
    out = torch.softmax(fusion.combine(p.log(), torch.ones(1, 2), "multiclass"), -1)
    expected = p.prod(1) / p.prod(1).sum()
    assert torch.allclose(out, expected, atol=1e-5)


def test_tensor_fusion_refuses_huge_outputs():
    with pytest.raises(ValueError, match="low_rank"):
        registry.build(
            "fusion", {"type": "tensor", "dim": 64}, in_dims={str(i): 4 for i in range(4)}
        )
