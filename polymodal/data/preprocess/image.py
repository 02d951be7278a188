"""Image cells -> normalised (C, H, W) tensors, decoded once; batched train-time augmentation
(random resized crop, horizontal flip, rotation) in one ``affine_grid`` call."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from polymodal.data.base import Preprocessor, Transformed
from polymodal.data.preprocess.files import decode_column
from polymodal.registry import register


@register("preprocessor", "image")
class ImagePreprocessor(Preprocessor):
    modality = "image"

    def __init__(
        self,
        image_size: int = 64,  # square side after resizing
        channels: int = 3,  # 3: RGB, 1: grayscale
        mean: list[float] | None = None,  # per channel, after scaling to [0, 1]; default 0.5
        std: list[float] | None = None,  # default 0.5, i.e. pixels in [-1, 1]
        augment: bool = False,
        crop_scale_min: float = 0.8,  # random resized crop keeps >= this share of the area
        flip: bool = True,
        rotation_degrees: float = 10.0,
    ) -> None:
        if channels not in (1, 3):
            raise ValueError(f"image preprocessing: channels must be 1 or 3, got {channels}")
        self.image_size, self.channels = image_size, channels
        self.mean = list(mean) if mean is not None else [0.5] * channels
        self.std = list(std) if std is not None else [0.5] * channels
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(
                f"image preprocessing: mean and std need one value per channel ({channels}), "
                f"got {self.mean} and {self.std}"
            )
        self.augment_enabled = augment
        self.crop_scale_min, self.flip, self.rotation_degrees = (
            crop_scale_min,
            flip,
            rotation_degrees,
        )

    def options(self) -> dict[str, Any]:
        # the `augment` option is stored as `augment_enabled` (the name `augment` is the method)
        keys = (
            "image_size",
            "channels",
            "mean",
            "std",
            "crop_scale_min",
            "flip",
            "rotation_degrees",
        )
        return {**{k: getattr(self, k) for k in keys}, "augment": self.augment_enabled}

    def decode(self, target: bytes | Path) -> torch.Tensor:
        src: Any = io.BytesIO(target) if isinstance(target, bytes) else target
        with Image.open(src) as opened:
            opened.load()
            img: Image.Image = opened
            if img.mode in (
                "RGBA",
                "LA",
                "P",
            ):  # transparent pixels on white, as a viewer shows them
                img = img.convert("RGBA")
                bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(bg, img)
            img = img.convert("RGB" if self.channels == 3 else "L")
            img = img.resize((self.image_size, self.image_size), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.float32) / 255.0
        x = torch.from_numpy(arr.reshape(self.image_size, self.image_size, -1)).permute(2, 0, 1)
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        return ((x - mean) / std).contiguous()  # (C, H, W)

    def transform(
        self,
        frame: pd.DataFrame,
        columns: list[str],
        base_dir: Path,
        source: str = "<table>",
        bad_cells: str = "raise",
    ) -> Transformed:
        empty = torch.zeros(self.channels, self.image_size, self.image_size)
        return decode_column(
            frame[columns[0]],
            base_dir,
            self.decode,
            empty,
            "a readable image (PNG/JPEG/...)",
            source,
            bad_cells,
        )

    @property
    def augments(self) -> bool:
        return bool(self.augment_enabled)

    def augment(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Random resized crop + flip + rotation for a batch (B, C, H, W), as one affine warp."""
        if not self.augment_enabled:
            return x
        b = x.shape[0]
        rand = lambda: torch.rand(b, generator=generator)  # noqa: E731
        scale = torch.sqrt(self.crop_scale_min + (1 - self.crop_scale_min) * rand())  # side share
        angle = (rand() * 2 - 1) * math.radians(self.rotation_degrees)
        flip = torch.where(rand() < 0.5, -1.0, 1.0) if self.flip else torch.ones(b)
        shift = (1 - scale) * (rand() * 2 - 1), (1 - scale) * (rand() * 2 - 1)
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        theta = (
            torch.stack(
                [
                    torch.stack([cos * flip, -sin, shift[0]], 1),
                    torch.stack([sin * flip, cos, shift[1]], 1),
                ],
                1,
            )
            .to(x.dtype)
            .to(x.device)
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, padding_mode="border", align_corners=False)

    def spec(self) -> dict[str, Any]:
        return {"in_channels": self.channels, "image_size": self.image_size}
