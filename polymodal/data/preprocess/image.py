"""Image cells -> normalised (C, H, W) tensors, decoded once; batched train-time augmentation
(random resized crop, horizontal flip, rotation in one ``affine_grid`` call; colour jitter,
greyscale), optionally as a fixed set of ``views`` per row that a frozen encoder's feature cache
can serve (:mod:`polymodal.data.preprocess.image_augment`).

Decoding is bounded: only common raster formats are opened (never EPS and the like, which call
out to other programs), the size in the header is checked against ``max_pixels`` before any
pixel is decoded, and JPEGs are decoded at a reduced scale (``draft``) when far larger than
needed. 16-bit and float images are scaled to [0, 1] by their own range (not clipped at 255);
palette, alpha, CMYK and 1-bit images are converted, EXIF orientation applied.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps

from polymodal.data.base import Preprocessor, Transformed
from polymodal.data.paths import ANYWHERE, FileAccess
from polymodal.data.preprocess.files import decode_column
from polymodal.data.preprocess.image_augment import MAX_VIEWS, ImageAugment
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
        color_jitter: float = 0.0,  # brightness, contrast and saturation change, up to this much
        grayscale: float = 0.0,  # share of augmented images turned grey
        views: int = 0,  # > 0: each row is itself or one of `views` fixed augmented versions
        max_pixels: int = 40_000_000,  # larger images (width x height) are bad cells
    ) -> None:
        if channels not in (1, 3):
            raise ValueError(f"image preprocessing: channels must be 1 or 3, got {channels}")
        _check_augment(crop_scale_min, color_jitter, grayscale, views)
        self.image_size, self.channels = image_size, channels
        self.mean = list(mean) if mean is not None else [0.5] * channels
        self.std = list(std) if std is not None else [0.5] * channels
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(
                f"image preprocessing: mean and std need one value per channel ({channels}), "
                f"got {self.mean} and {self.std}"
            )
        self.augment_enabled = augment
        self.max_pixels = max_pixels
        self.crop_scale_min, self.flip, self.rotation_degrees = (
            crop_scale_min,
            flip,
            rotation_degrees,
        )
        self.color_jitter, self.grayscale, self.views = color_jitter, grayscale, views

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
            "color_jitter",
            "grayscale",
            "views",
            "max_pixels",
        )
        return {**{k: getattr(self, k) for k in keys}, "augment": self.augment_enabled}

    def decode(self, target: bytes | Path) -> torch.Tensor:
        src: Any = io.BytesIO(target) if isinstance(target, bytes) else target
        with warnings.catch_warnings():  # PIL warns above its own limit; ours is lower
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(src, formats=open_formats())
        with opened:
            opened.draft(None, (self.image_size, self.image_size))  # JPEG: decode at 1/2..1/8
            width, height = opened.size
            if width * height > self.max_pixels:  # checked before a single pixel is decoded
                raise ValueError(
                    f"an image of {width}x{height} = {width * height:,} pixels, over the limit "
                    f"of {self.max_pixels:,} (image preprocessing max_pixels)"
                )
            img = ImageOps.exif_transpose(opened)  # decodes; a rotated photo stands upright
        arr = unit_pixels(img, self.channels, self.image_size)  # (H, W, C) in [0, 1]
        x = torch.from_numpy(arr).permute(2, 0, 1)
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
        access: FileAccess = ANYWHERE,
    ) -> Transformed:
        empty = torch.zeros(self.channels, self.image_size, self.image_size)
        return decode_column(
            frame[columns[0]],
            base_dir,
            self.decode,
            empty,
            f"a readable image ({', '.join(open_formats()[:6])}...) of at most "
            f"{self.max_pixels:,} pixels",
            source,
            bad_cells,
            access=access,
        )

    @property
    def augments(self) -> bool:
        return bool(self.augment_enabled)

    @property
    def fixed_views(self) -> bool:
        return self.augment_enabled and self.views > 0

    def augment(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Random resized crop + flip + rotation and colour changes for a batch (B, C, H, W)."""
        if not self.augment_enabled:
            return x
        aug = ImageAugment(self.crop_scale_min, self.flip, self.rotation_degrees,
                           self.color_jitter, self.grayscale, self.views)  # fmt: skip
        return aug(x, self.mean, self.std, generator)

    def spec(self) -> dict[str, Any]:
        return {"in_channels": self.channels, "image_size": self.image_size}


FORMATS = ("PNG", "JPEG", "GIF", "BMP", "DIB", "TIFF", "WEBP", "PPM", "TGA", "ICO", "QOI", "AVIF")
HIGH_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # 16-bit, 32-bit int and float pixels


def open_formats() -> list[str]:
    """The raster formats this Pillow can open, of those polymodal accepts."""
    Image.init()
    return [f for f in FORMATS if f in Image.OPEN]


def unit_pixels(img: Image.Image, channels: int, size: int) -> np.ndarray:
    """``img`` resized to ``size`` x ``size``, as float32 (H, W, channels) in [0, 1]."""
    if img.mode in HIGH_BIT:
        grey = img if img.mode == "F" else img.convert("F")  # exact for integers up to 2**24
        lo, hi = grey.getextrema()  # one band: (min, max)
        floor, span = _range(img.mode, float(lo), float(hi))  # type: ignore[arg-type]
        grey = grey.resize((size, size), Image.Resampling.BILINEAR)
        arr = (np.asarray(grey, dtype=np.float32) - floor) / span
        arr = np.clip(arr, 0.0, 1.0)[:, :, None]
        return np.repeat(arr, channels, axis=2) if channels == 3 else arr
    if "A" in img.getbands() or "a" in img.getbands() or "transparency" in img.info:
        img = img.convert("RGBA")  # transparent pixels on white, as a viewer shows them
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img)
    img = img.convert("RGB" if channels == 3 else "L")  # also palette, CMYK, 1-bit, YCbCr
    img = img.resize((size, size), Image.Resampling.BILINEAR)
    return (np.asarray(img, dtype=np.float32) / 255.0).reshape(size, size, channels)


def _check_augment(crop_scale_min: float, color_jitter: float, grayscale: float, views: int) -> None:  # fmt: skip
    if not 0 < crop_scale_min <= 1 or not 0 <= color_jitter < 1 or not 0 <= grayscale <= 1:
        raise ValueError(
            "image preprocessing: expected crop_scale_min in (0, 1], color_jitter in [0, 1) and "
            f"grayscale in [0, 1], got {crop_scale_min}, {color_jitter} and {grayscale}"
        )
    if not isinstance(views, int) or not 0 <= views <= MAX_VIEWS:
        raise ValueError(f"image preprocessing: views must be an integer in 0..{MAX_VIEWS}, got {views!r}")  # fmt: skip


def _range(mode: str, lo: float, hi: float) -> tuple[float, float]:
    """(value shown as 0.0, span up to 1.0): integers span 0..65535 (16-bit); floats in [0, 1],
    [0, 255] or [0, 65535] keep that range; anything else is scaled by its own min and max."""
    tops = (1.0, 255.0, 65535.0) if mode == "F" else (65535.0,)
    for top in tops:
        if lo >= 0 and hi <= top:
            return 0.0, top
    return float(lo), float(hi - lo) or 1.0
