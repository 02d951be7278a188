"""Twemoji tables and configs shared by the benchmark's runs.

Split by emoji with a fixed seed: 80 % of the 1,911 base emoji train, 20 % test (as in the
shared reference); 15 % of the training emoji are carved out as the validation split used for
every choice. Skin-tone variants follow their base emoji's split and appear in training only (as
extra images of the same name); validation and test hold one row per base emoji, so text->image
and image->text galleries have exactly one correct item per query.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "twemoji"
SEED = 0
TEST_FRACTION, VAL_FRACTION = 0.2, 0.15


def text_of(name: str) -> str:
    return name.lower()


def alt_texts(entry: dict[str, Any]) -> list[str]:
    """Short names (``face_with_tears_of_joy`` -> ``face with tears of joy``) that differ from
    the name: extra training captions of the same icon."""
    name = text_of(entry["name"])
    alts = {s.replace("_", " ").replace("-", " ").strip() for s in entry.get("short_names") or []}
    return sorted(a for a in alts if a and a != name)


def load_splits(data: Path = DATA, quick: bool = False) -> dict[str, pd.DataFrame]:
    """``train`` (base + skin-tone variants, names), ``train_alt`` (train plus short-name rows),
    ``val`` and ``test`` (one row per base emoji). Columns: image, text, category, emoji."""
    entries = json.loads((data / "emoji.json").read_text(encoding="utf-8"))
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(entries))
    n_test = round(TEST_FRACTION * len(entries))
    test_ids = set(order[:n_test].tolist())
    rest = order[n_test:]
    val_ids = set(rest[: round(VAL_FRACTION * len(rest))].tolist())
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "train_alt": [], "val": [], "test": []}
    for i, e in enumerate(entries):
        base = {"text": text_of(e["name"]), "category": e["category"], "emoji": e["unified"]}
        split = "test" if i in test_ids else "val" if i in val_ids else "train"
        images = [e["image"]]
        if split == "train":
            images += [v["image"] for v in (e.get("skin_variations") or {}).values()]
        for img in images:
            rows[split].append({"image": f"img64/{img}", **base})
            if split == "train":
                rows["train_alt"].append({"image": f"img64/{img}", **base})
                for alt in alt_texts(e):
                    rows["train_alt"].append({"image": f"img64/{img}", **base, "text": alt})
    frames = {k: pd.DataFrame(v) for k, v in rows.items()}
    if quick:  # a smoke run: a slice of every split
        frames = {k: f.sample(min(len(f), 160), random_state=SEED) for k, f in frames.items()}
    return frames


IMAGE = {"name": "image", "type": "image", "encoder": {"type": "efficientnet_lite"}}
TEXT = {"name": "text", "type": "text", "encoder": {"type": "minilm", "max_length": 32}}


def trainer(epochs: int, cache_dir: str | None, **extra: Any) -> dict[str, Any]:
    return {
        "epochs": epochs, "batch_size": 128, "lr": 1e-3, "progress": False, "seed": SEED,
        "early_stopping_patience": None, "feature_cache_dir": cache_dir, **extra,
    }  # fmt: skip


def retrieval_config(
    epochs: int, cache_dir: str | None, head: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """Frozen EfficientNet-Lite0 and frozen MiniLM, trainable MLP towers into one space."""
    return {
        "inputs": [IMAGE, TEXT],
        "outputs": [
            {"name": "match", "task": "retrieval", "pair": ["image", "text"], "head": head or {}}
        ],
        "trainer": trainer(epochs, cache_dir, monitor="match.mean_R@10", **extra),
    }


def caption_config(epochs: int, cache_dir: str | None, head: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Frozen EfficientNet-Lite0 features -> caption decoder writing the emoji's name."""
    return {
        "inputs": [IMAGE],
        "outputs": [{"name": "text", "task": "caption", "head": head or {}}],
        "trainer": trainer(epochs, cache_dir, monitor="text.bleu4", lr=2e-3),
    }


def category_config(epochs: int, cache_dir: str | None) -> dict[str, Any]:
    """Sanity row: image + name fused (concat), the 10-way category."""
    return {
        "inputs": [IMAGE, TEXT],
        "fusion": {"type": "concat", "out_dim": 256, "dropout": 0.2},
        "outputs": [{"name": "category", "task": "multiclass", "head": {"hidden": 256}}],
        "trainer": trainer(epochs, cache_dir, monitor="category.accuracy"),
    }
