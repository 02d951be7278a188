"""Every registered head: shapes, finite loss and gradients, per-row losses, focal loss and class
weights change the loss, decoding."""

import pytest
import torch
from safetensors.torch import load_file, save_file

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


LABEL_TASKS = ("binary", "multiclass", "multilabel", "regression")


@pytest.mark.parametrize("task", [t for t in registry.names("head") if t in LABEL_TASKS])
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


def _sequence_case(task):
    """(head, its input as the model hands it, a target) for heads that are not one label/row."""
    if task == "retrieval":
        head = registry.build(
            "head",
            {"type": task, "dim": 8, "hidden": 16},
            in_dims={"a": D, "b": 5},
            pair=["a", "b"],
        )
        feats = {"a": torch.randn(B, D, requires_grad=True), "b": torch.randn(B, 5)}
        masks = {"a": torch.ones(B, dtype=torch.bool), "b": torch.ones(B, dtype=torch.bool)}
        return head, (feats, masks), feats["a"], torch.arange(B).repeat(2, 1).T
    if task == "caption":
        head = registry.build(
            "head", {"type": task, "d_model": 16, "ff_dim": 32, "max_length": 5}, in_dim=D,
            num_outputs=9,
        )  # fmt: skip
        x = torch.randn(B, D, requires_grad=True)
        target = torch.tensor([[2, 4, 5, 3, 0]] * B)  # <bos> w w <eos> <pad>
        return head, (x,), x, target
    pytest.fail(f"head {task!r} has no test case: add one to tests/heads/test_heads.py")


@pytest.mark.parametrize("task", [t for t in registry.names("head") if t not in LABEL_TASKS])
def test_sequence_head_contract(task, tmp_path):
    """Retrieval / caption heads: finite loss with gradients, per-row losses, decoding, and a
    safetensors round trip that reproduces the output."""
    torch.manual_seed(0)
    head, args, leaf, target = _sequence_case(task)
    out = head(*args)
    loss = head.loss(out, target)
    loss.backward()
    assert torch.isfinite(loss) and leaf.grad is not None
    assert head.loss(out, target, reduction="none").shape == (B,)
    assert head.decode(out.detach())["pred"].shape[0] == B
    head.eval()
    save_file(head.state_dict(), str(tmp_path / "head.safetensors"))
    torch.manual_seed(1)
    again, _, _, _ = _sequence_case(task)
    again.load_state_dict(load_file(str(tmp_path / "head.safetensors")))
    again.eval()
    with torch.no_grad():
        assert torch.equal(head(*args), again(*args))


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
