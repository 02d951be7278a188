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


SERIES_ENCODERS = {  # tiny settings of every time-series encoder, for end-to-end tests
    "series_cnn": {"channels": [8, 8], "kernel_sizes": [3, 3]},
    "series_gru": {"hidden": 8},
    "patchtst": {"patch": 4, "dim": 16, "heads": 2, "layers": 1, "ff_dim": 32},
    "minirocket": {"num_features": 840},
}


def add_series(frame: pd.DataFrame, folder: Path, inline: bool = False) -> pd.DataFrame:
    """``frame`` (from :func:`make_table`) with ``motion``: a 3-channel series of 8-24 steps whose
    frequency follows ``label`` (channels ``x``, ``y``, ``z``), every fourth with a gap step.
    Cells are paths relative to ``folder`` (.npy and CSV files in turn), or the series itself as a
    list of steps (``inline``, for Parquet / JSON Lines tables)."""
    rng = np.random.default_rng(1)
    (folder / "series").mkdir(parents=True, exist_ok=True)
    cells: list[object] = []
    for i, name in enumerate(frame["label"]):
        freq = 1 + ["cat", "dog", "eel"].index(name)
        t = np.arange(int(rng.integers(8, 25))) / 4
        steps = np.stack([np.sin(freq * t), np.cos(freq * t), 0.1 * rng.standard_normal(len(t))], 1)
        if i % 4 == 0:
            steps[len(t) // 2] = np.nan  # a gap: a masked step
        if inline:
            cells.append([[None if np.isnan(v) else float(v) for v in step] for step in steps])
        elif i % 2:
            pd.DataFrame(steps, columns=["x", "y", "z"]).to_csv(
                folder / "series" / f"{i}.csv", index=False
            )
            cells.append(f"series/{i}.csv")
        else:
            np.save(folder / "series" / f"{i}.npy", steps)
            cells.append(f"series/{i}.npy")
    return frame.assign(motion=cells)


def series_config(
    fusion: str = "concat", epochs: int = 2, encoder: str = "series_cnn", **fusion_kwargs: object
) -> dict:
    """:func:`config_for` plus the ``motion`` series input (``encoder`` in a tiny setting)."""
    cfg = config_for(fusion, epochs, **fusion_kwargs)
    cfg["inputs"].append(
        {"name": "motion", "type": "timeseries",
         "encoder": {"type": encoder, **SERIES_ENCODERS[encoder]}}
    )  # fmt: skip
    return cfg


VIDEO_ENCODERS = {  # tiny settings of every video encoder, for end-to-end tests
    "video_frames": {
        "frame_encoder": {"type": "image_cnn", "channels": [4, 8], "out_dim": 8},
        "temporal": "gru",
        "hidden": 8,
    },
    "video_r21d": {"channels": [4, 8], "out_dim": 8},
}


def add_video(frame: pd.DataFrame, folder: Path, ext: str = ".mp4") -> pd.DataFrame:
    """``frame`` (from :func:`make_table`) with ``clip``: a 16x16 clip of 6 frames whose colour
    and motion follow ``label``, with a tone of the label's pitch as its sound track (every
    fifth clip is silent: no audio stream). Cells are paths relative to ``folder``."""
    from tests.videos import moving_square, tone, write_clip

    cells = []
    for i, name in enumerate(frame["label"]):
        label = ["cat", "dog", "eel"].index(name)
        path = folder / "clips" / f"{i}{ext}"
        write_clip(path, moving_square(label, seed=i), audio=None if i % 5 == 4 else tone(label))
        cells.append(f"clips/{i}{ext}")
    return frame.assign(clip=cells)


def video_config(encoder: str = "video_frames", epochs: int = 1, sound: bool = True) -> dict:
    """The ``clip`` video input (``encoder`` in a tiny setting) with the tabular inputs of
    :func:`config_for`, and (``sound``) an audio input reading the clips' sound tracks."""
    cfg = config_for("concat", epochs)
    cfg["inputs"] = [i for i in cfg["inputs"] if i["type"] in ("numeric", "categorical")]
    cfg["inputs"].append(
        {"name": "clip", "type": "video", "encoder": {"type": encoder, **VIDEO_ENCODERS[encoder]},
         "preprocessing": {"num_frames": 4, "image_size": 16}}
    )  # fmt: skip
    if sound:
        audio = next(i for i in config_for()["inputs"] if i["type"] == "audio")
        cfg["inputs"].append({**audio, "name": "sound", "columns": ["clip"]})
    return cfg
