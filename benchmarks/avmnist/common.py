"""Shared settings of the AV-MNIST benchmark: one network and budget for every method."""

from __future__ import annotations

from typing import Any

IMAGE = {
    "name": "image",
    "type": "image",
    # LeNet-style: keep the 4x4 layout of the last feature map (pool "flatten"), chosen on a
    # speaker-held-out validation split (tune.py) over global pooling
    "encoder": {"type": "image_cnn", "channels": [16, 32, 64], "out_dim": 64, "pool": "flatten"},
    "preprocessing": {"channels": 1, "image_size": 28, "mean": [0.5], "std": [0.5]},
}
AUDIO = {
    "name": "audio",
    "type": "audio",
    # average over time only, keep the mel bands (pool "freq"): where the energy sits in
    # frequency is what tells words apart; chosen on the speaker-held-out split (tune.py)
    "encoder": {"type": "audio_cnn", "channels": [8, 16, 32], "out_dim": 64, "pool": "freq"},
    # 8 kHz speech, 25 ms windows every 20 ms; per-clip normalisation and SpecAugment for
    # unseen speakers (SpecAugment chosen on the speaker-held-out split)
    "preprocessing": {"sample_rate": 8000, "max_seconds": 1.0, "n_fft": 200, "hop_length": 160,
                      "n_mels": 40, "normalize": "per_clip", "specaugment": True, "time_mask": 10,
                      "freq_mask": 8},
}  # fmt: skip

FUSIONS: dict[str, dict[str, Any] | None] = {
    "image_only": None,
    "audio_only": None,
    "concat": {"type": "concat"},
    "weighted_sum": {"type": "weighted_sum"},
    "gated": {"type": "gated"},
    "product": {"type": "product"},
    "tensor": {"type": "tensor", "dim": 16},
    "low_rank": {"type": "low_rank"},
    "attention": {"type": "attention"},
    "late_mean": {"type": "late", "rule": "mean"},
    "late_product": {"type": "late", "rule": "product"},
    "late_vote": {"type": "late", "rule": "vote"},
    "late_learned": {"type": "late", "rule": "learned"},
}


def trainer(epochs: int, modality_dropout: float) -> dict[str, Any]:
    return {"epochs": epochs, "batch_size": 128, "lr": 0.002, "weight_decay": 0.01,
            "schedule": "cosine", "warmup_ratio": 0.05, "early_stopping_patience": None,
            "monitor": "label.accuracy", "modality_dropout": modality_dropout, "seed": 0,
            "progress": False}  # fmt: skip


def config(method: str, epochs: int, modality_dropout: float = 0.0) -> dict[str, Any]:
    fusion = FUSIONS[method]
    inputs = (
        [IMAGE] if method == "image_only" else [AUDIO] if method == "audio_only" else [IMAGE, AUDIO]
    )
    return {
        "inputs": inputs,
        "fusion": fusion or {"type": "concat"},
        # label smoothing 0.1 (chosen on the speaker-held-out split): softer, better-calibrated
        # probabilities, which the product and mean rules of late fusion multiply / average
        "outputs": [{"name": "label", "task": "multiclass", "head": {"label_smoothing": 0.1}}],
        "trainer": trainer(epochs, modality_dropout if len(inputs) > 1 else 0.0),
    }
