"""Style robustness (issue 22 item 3): the test icons drawn in styles no model saw in training,
generated here from the test icons with a fixed seed, and retrieval scored on them beside the
clean test split.

Styles:
- ``grey``: greyscale, on a random mid-tone background (not white), rotated by up to 20 degrees
  and scaled to 65-95 % at a random offset;
- ``outline``: a black edge map on white (the icon's colour edges, thickened), as a line drawing.

Each icon's random draw depends only on the seed and its position in the test split, so every run
writes the same images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter, ImageOps

SEED = 22
STYLES = ("grey", "outline")


def _on_white(path: Path) -> Image.Image:
    with Image.open(path) as img:
        rgba = img.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)


def grey(path: Path, rng: np.random.Generator) -> Image.Image:
    """Greyscale, mid-tone background, small rotation and scale change."""
    with Image.open(path) as img:
        rgba = img.convert("RGBA")
    size = rgba.size[0]
    scale = rng.uniform(0.65, 0.95)
    small = rgba.resize((round(size * scale),) * 2, Image.Resampling.BICUBIC)
    small = small.rotate(rng.uniform(-20, 20), Image.Resampling.BICUBIC, expand=False)
    tone = int(rng.integers(90, 190))
    canvas = Image.new("RGBA", (size, size), (tone, tone, tone, 255))
    room = size - small.size[0]
    canvas.alpha_composite(small, (int(rng.integers(0, room + 1)), int(rng.integers(0, room + 1))))
    return ImageOps.grayscale(canvas).convert("RGB")


def outline(path: Path, rng: np.random.Generator) -> Image.Image:
    """Black colour edges on white: the icon as a line drawing."""
    img = _on_white(path).convert("RGB").resize((128, 128), Image.Resampling.BICUBIC)
    edges = img.filter(ImageFilter.FIND_EDGES).convert("L")  # (H, W) edge strength
    edges = edges.filter(ImageFilter.MaxFilter(3))
    lines = np.where(np.asarray(edges) > 40, 0, 255).astype(np.uint8)
    return Image.fromarray(lines).convert("RGB").resize((64, 64), Image.Resampling.LANCZOS)


DRAW = {"grey": grey, "outline": outline}


def restyle(frame: pd.DataFrame, data: Path, out: Path, style: str) -> pd.DataFrame:
    """``frame`` with its ``image`` cells pointing at restyled copies written under ``out``
    (paths relative to ``out``)."""
    rng = np.random.default_rng([SEED, STYLES.index(style)])
    folder = out / style
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for rel in frame["image"]:
        name = Path(rel).name
        DRAW[style](data / rel, rng).save(folder / name)
        images.append(f"{style}/{name}")
    return frame.assign(image=images)


def drop(clean: float, styled: float) -> float:
    """Relative drop of a recall from the clean split to a restyled one."""
    return 1.0 - styled / clean if clean else float("nan")


def with_drops(clean: dict[str, Any], styled: dict[str, Any]) -> dict[str, Any]:
    """R@1 / R@10 on the restyled icons, both directions, and the relative drop of R@10."""
    out: dict[str, Any] = {}
    for d in ("text_to_image", "image_to_text"):
        out[f"{d}_R@1"] = styled[f"{d}_R@1"]
        out[f"{d}_R@10"] = styled[f"{d}_R@10"]
        out[f"{d}_R@10_relative_drop"] = drop(clean[f"{d}_R@10"], styled[f"{d}_R@10"])
    return out
