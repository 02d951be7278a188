"""Every registered head: shapes, finite loss and gradients, per-row losses, focal loss and class
weights change the loss, decoding."""

import pytest
import torch

import polymodal.heads  # noqa: F401
from polymodal import registry

B, D = 6, 8
OUT = {"binary": 1, "multiclass": 4, "multilabel": 3, "regression": 1}


def _target(task):
    if task == "multiclass":
        return torch.tensor([0, 1, 2, 3, 0, 1])
    if task == "multilabel":
        return (torch.arange(B * 3).reshape(B, 3) % 2).float()
    return torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.0])


@pytest.mark.parametrize("task", registry.names("head"))
def test_head_contract(task):
    torch.manual_seed(0)
    head = registry.build("head", {"type": task, "hidden": 16}, in_dim=D, num_outputs=OUT[task])
    x = torch.randn(B, D, requires_grad=True)
    logits = head(x)
    assert logits.shape == (B, OUT[task])
    assert head(torch.randn(B, 3, D)).shape == (B, 3, OUT[task])  # per-modality tokens
    loss = head.loss(logits, _target(task))
    loss.backward()
    assert torch.isfinite(loss) and x.grad is not None
    assert head.loss(logits, _target(task), reduction="none").shape == (B,)
    out = head.decode(logits.detach())
    assert out["pred"].shape[0] == B
    if task in ("binary", "multiclass"):
        assert torch.allclose(out["proba"].sum(-1), torch.ones(B))


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_focal_and_class_weights_change_the_loss(task):
    torch.manual_seed(0)
    logits = torch.randn(B, OUT[task])
    base = registry.build("head", {"type": task}, in_dim=D, num_outputs=OUT[task])
    focal = registry.build("head", {"type": task}, in_dim=D, num_outputs=OUT[task], loss="focal")
    weighted = registry.build(
        "head", {"type": task}, in_dim=D, num_outputs=OUT[task], class_weights=[3.0] * OUT[task]
    )
    ref = base.loss(logits, _target(task))
    assert focal.loss(logits, _target(task)) < ref  # focal down-weights easy examples
    assert not torch.isclose(weighted.loss(logits, _target(task)), ref)


def test_unknown_loss_lists_choices():
    with pytest.raises(ValueError, match="valid choices: default, focal"):
        registry.build("head", {"type": "binary"}, in_dim=D, num_outputs=1, loss="hinge")


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_label_smoothing_penalises_confident_correct_logits(task):
    target = _target(task)
    if task == "multiclass":
        logits = 20.0 * torch.nn.functional.one_hot(target, OUT[task]).float()
    else:
        logits = 20.0 * (2 * target.float().reshape(B, -1) - 1)
    plain = registry.build("head", {"type": task}, in_dim=D, num_outputs=OUT[task])
    smooth = registry.build(
        "head", {"type": task, "label_smoothing": 0.2}, in_dim=D, num_outputs=OUT[task]
    )
    assert plain.loss(logits, target) < 1e-3  # confident and right: no loss without smoothing
    assert smooth.loss(logits, target) > 0.5  # smoothing makes such overconfidence costly


def test_label_smoothing_rejected_for_regression_and_out_of_range():
    with pytest.raises(ValueError, match="classification only"):
        registry.build(
            "head", {"type": "regression", "label_smoothing": 0.1}, in_dim=D, num_outputs=1
        )
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        registry.build("head", {"type": "binary", "label_smoothing": 1.5}, in_dim=D, num_outputs=1)
