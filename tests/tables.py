"""Tiny generated tables with all five column types, for end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from PIL import Image

WORDS = ["red", "blue", "green", "small", "large", "soft", "loud", "bright", "dark", "quiet"]


def make_table(folder: Path, n: int = 48, seed: int = 0) -> pd.DataFrame:
    """A table whose `label` (3 classes) is visible in every modality, plus `score` (regression)
    and `flag` (binary). Image and audio cells are paths relative to ``folder``."""
    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    (folder / "wav").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        label = i % 3
        img = np.full((16, 16, 3), 40 + 80 * label, dtype=np.uint8)
        img = np.clip(img + rng.integers(0, 30, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / "img" / f"{i}.png")
        t = np.arange(4000) / 8000
        wave = 0.3 * np.sin(2 * np.pi * (300 + 400 * label) * t) + 0.01 * rng.standard_normal(4000)
        sf.write(folder / "wav" / f"{i}.wav", wave.astype(np.float32), 8000)
        text = " ".join(rng.choice(WORDS, 4)) + f" class{label} " + " ".join(rng.choice(WORDS, 3))
        rows.append(
            {
                "review": text,
                "photo": f"img/{i}.png",
                "voice": f"wav/{i}.wav",
                "age": float(20 + 10 * label + rng.normal()),
                "size": ["S", "M", "L"][label] if i % 7 else None,
                "label": ["cat", "dog", "eel"][label],
                "flag": int(label == 2),
                "score": float(label + 0.1 * rng.normal()),
            }
        )
    return pd.DataFrame(rows)


def config_for(fusion: str = "concat", epochs: int = 2, **fusion_kwargs: object) -> dict:
    return {
        "inputs": [
            {"name": "review", "type": "text", "encoder": {"type": "bow", "embed_dim": 16}},
            {
                "name": "photo",
                "type": "image",
                "encoder": {"type": "image_cnn"},
                "preprocessing": {"image_size": 16},
            },
            {
                "name": "voice",
                "type": "audio",
                "encoder": {"type": "audio_cnn"},
                "preprocessing": {
                    "sample_rate": 8000,
                    "max_seconds": 0.5,
                    "n_fft": 200,
                    "hop_length": 80,
                    "n_mels": 16,
                },
            },
            {"name": "numeric", "type": "numeric", "columns": ["age"]},
            {"name": "size", "type": "categorical"},
        ],
        "fusion": {"type": fusion, **fusion_kwargs},
        "outputs": [{"name": "label", "task": "multiclass"}],
        "data": {"seed": 0},
        "trainer": {
            "epochs": epochs,
            "batch_size": 16,
            "lr": 0.01,
            "progress": False,
            "early_stopping_patience": None,
        },
    }
