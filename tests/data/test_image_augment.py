"""Image augmentation: colour jitter, greyscale, and fixed views per row that a frozen encoder's
feature cache serves (``views``)."""

from __future__ import annotations

import pytest
import torch

from polymodal import Predictor
from polymodal.data.preprocess.image import ImagePreprocessor
from tests.tables import make_table

TINY_VIT = {"model_type": "vit", "hidden_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 32, "image_size": 16,
            "patch_size": 8}  # fmt: skip


def _batch(n: int = 6) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(n, 3, 16, 16) * 2 - 1  # normalised pixels in [-1, 1]


def test_views_give_each_row_one_of_a_fixed_few_versions() -> None:
    pre = ImagePreprocessor(image_size=16, augment=True, views=2, color_jitter=0.3)
    x = _batch()
    seen: list[set[bytes]] = [set() for _ in range(len(x))]
    for seed in range(40):
        out = pre.augment(x, torch.Generator().manual_seed(seed))
        for i, row in enumerate(out):
            seen[i].add(row.numpy().tobytes())
    for i, versions in enumerate(seen):
        assert len(versions) == 3  # the row itself and its 2 views, nothing else
        assert x[i].numpy().tobytes() in versions
    # another row with the same pixels gets the same versions (seeded by its pixels)
    twin = pre.augment(x[:1].repeat(8, 1, 1, 1), torch.Generator().manual_seed(5))
    assert {r.numpy().tobytes() for r in twin} <= seen[0]


def test_fresh_augmentation_differs_every_draw() -> None:
    pre = ImagePreprocessor(image_size=16, augment=True)
    x = _batch(2)
    outs = {
        pre.augment(x, torch.Generator().manual_seed(s))[0].numpy().tobytes() for s in range(10)
    }
    assert len(outs) == 10 and not pre.fixed_views
    assert ImagePreprocessor(augment=True, views=3).fixed_views
    assert not ImagePreprocessor(augment=False, views=3).fixed_views


def test_grayscale_and_color_jitter_stay_in_pixel_range() -> None:
    x = _batch()
    grey = ImagePreprocessor(image_size=16, augment=True, grayscale=1.0, crop_scale_min=1.0,
                             rotation_degrees=0.0, flip=False)  # fmt: skip
    out = grey.augment(x, torch.Generator().manual_seed(0))
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-6) and torch.allclose(out[:, 1], out[:, 2], atol=1e-6)  # fmt: skip
    jit = ImagePreprocessor(image_size=16, augment=True, color_jitter=0.9)
    out = jit.augment(x, torch.Generator().manual_seed(0))
    assert out.min() >= -1 - 1e-6 and out.max() <= 1 + 1e-6 and not torch.equal(out, x)
    one = ImagePreprocessor(image_size=16, channels=1, augment=True, grayscale=1.0,
                            color_jitter=0.5)  # fmt: skip
    assert one.augment(x[:, :1], torch.Generator().manual_seed(0)).shape == (6, 1, 16, 16)


@pytest.mark.parametrize(
    ("opts", "match"),
    [
        ({"views": -1}, "views must be an integer"),
        ({"views": 1.5}, "views must be an integer"),
        ({"views": 300}, "views must be an integer"),
        ({"color_jitter": 1.0}, "color_jitter in"),
        ({"grayscale": 2.0}, "grayscale in"),
        ({"crop_scale_min": 0.0}, "crop_scale_min in"),
    ],
)
def test_bad_augment_options_are_named(opts: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ImagePreprocessor(**opts)


def test_a_frozen_encoder_caches_the_views(tmp_path) -> None:
    """Training with ``views: 2`` runs the frozen encoder at most 3 times per training row in
    all; plain augmentation gets no cache (every epoch's rows are new)."""
    frame = make_table(tmp_path, n=24)

    def config(views: int) -> dict:
        pre = {"image_size": 16, "augment": True, "views": views, "color_jitter": 0.2}
        return {
            "inputs": [{"name": "photo", "type": "image", "preprocessing": pre,
                        "encoder": {"type": "hf", "config": TINY_VIT, "freeze": True}}],
            "outputs": [{"name": "label", "task": "multiclass"}],
            "trainer": {"epochs": 6, "batch_size": 8, "progress": False, "seed": 0,
                        "feature_cache_dir": str(tmp_path / f"cache{views}")},
        }  # fmt: skip

    pred = Predictor(config(2)).fit(frame, base_dir=tmp_path)
    hist = pred.artifact_.history
    misses = hist[-1]["feature_cache"]["photo"][1]
    rows = len(frame) - len(frame) // 5  # the rows left for training after the validation split
    assert rows < misses <= 3 * len(frame)  # views computed once, served from then on
    assert hist[-1]["feature_cache"]["photo"][0] > hist[0]["feature_cache"]["photo"][0]
    plain = Predictor(config(0)).fit(frame, base_dir=tmp_path)
    assert "feature_cache" not in plain.artifact_.history[-1]


def test_views_with_a_trainable_encoder_warn(tmp_path, caplog) -> None:
    """``views`` saves time only through a frozen encoder's cache; with an encoder that trains
    it would silently just limit augmentation, so the fit says so."""
    import logging

    frame = make_table(tmp_path, n=12)
    pre = {"image_size": 16, "augment": True, "views": 2}
    cfg = {
        "inputs": [{"name": "photo", "type": "image", "preprocessing": pre,
                    "encoder": {"type": "hf", "config": TINY_VIT, "freeze": False}}],
        "outputs": [{"name": "label", "task": "multiclass"}],
        "trainer": {"epochs": 1, "batch_size": 8, "progress": False, "seed": 0,
                    "feature_cache_dir": str(tmp_path / "cache")},
    }  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="polymodal"):
        Predictor(cfg).fit(frame, base_dir=tmp_path)
    assert any("photo: preprocessing views only pays off" in r.getMessage() for r in caplog.records)
