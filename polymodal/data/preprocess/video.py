"""Video cells -> (N, T, C, H, W) float tensors: ``num_frames`` frames sampled from each clip,
scaled and cropped to ``image_size``, normalised like images (``(pixel / 255 - mean) / std``).

A cell is a path (relative to the table's folder, confined like image and audio paths) to a video
file (mp4, mov, m4v, avi, mkv, webm) or to a folder of frame images, or the file's bytes. Decoding
(PyAV, see :mod:`.video_io`) reads only the frames it needs and is bounded by ``max_pixels``,
``max_seconds``, ``max_frames`` and ``max_file_mb``; a clip beyond them, a missing, truncated or
corrupt file, a container without a video stream or without frames, a text file named ``.mp4``
is a bad cell (an error naming file, row and column, or masked and counted with
``data.bad_cells: mask``).

Every slot holds a real frame: a clip with fewer frames than ``num_frames`` repeats frames (spread
evenly) and with ``fps`` a clip shorter than the window holds its last frame, so there is no
per-frame mask and every encoder sees ``num_frames`` frames (a fixed axis in ONNX).

Augmentation (``augment: true``) works on the decoded batch, the same draw for every frame of a
clip: a random resized crop, a horizontal flip, brightness / contrast jitter, and temporal jitter
(each sampled position moves by up to ``temporal_jitter`` slots, order kept). Frames are decoded
once per table (not per epoch), so the temporal jitter picks among the decoded frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import torch
import torch.nn.functional as F

from polymodal.data.base import Preprocessor, Transformed
from polymodal.data.paths import ANYWHERE, FileAccess
from polymodal.data.preprocess.files import decode_column
from polymodal.data.preprocess.video_io import RESIZES, VIDEO_EXT, Limits, Sampling, read_clip
from polymodal.registry import register

EXPECTED = (
    f"a readable video file ({', '.join(e[1:] for e in VIDEO_EXT)}) with frames, or a folder of "
    "frame images"
)


@register("preprocessor", "video")
class VideoPreprocessor(Preprocessor):
    modality = "video"
    parts: ClassVar[str] = "frame"  # axis 1 holds frames: explanations occlude them one by one

    def __init__(
        self,
        num_frames: int = 8,  # frames per clip (axis 1 of the tensor)
        fps: float | None = None,  # None: spread over the whole clip; else frames a second
        image_size: int = 64,  # square side of every frame
        channels: int = 3,  # 3: RGB, 1: grayscale
        resize: str = "crop",  # crop: shorter side to image_size, centre crop; squash: stretch
        mean: list[float] | None = None,  # per channel, after scaling to [0, 1]; default 0.5
        std: list[float] | None = None,  # default 0.5, i.e. pixels in [-1, 1]
        folder_fps: float = 25.0,  # frame rate of a folder of frame images (for fps sampling)
        augment: bool = False,  # train time: crop, flip, colour and temporal jitter per clip
        crop_scale_min: float = 0.8,  # random resized crop keeps >= this share of the area
        flip: bool = True,
        color_jitter: float = 0.2,  # brightness offset and contrast change, up to this much
        temporal_jitter: int = 1,  # slots each sampled frame may move (augment)
        max_pixels: int = 10_000_000,  # larger frames (width x height) are bad cells
        max_seconds: float = 3600.0,  # longer clips are bad cells
        max_frames: int = 200_000,  # clips (or frame folders) with more frames are bad cells
        max_file_mb: float = 1024.0,  # larger files are bad cells (nothing read)
    ) -> None:
        _check(num_frames, fps, channels, resize, crop_scale_min, temporal_jitter)
        self.num_frames, self.fps, self.image_size = num_frames, fps, image_size
        self.channels, self.resize, self.folder_fps = channels, resize, folder_fps
        self.mean = list(mean) if mean is not None else [0.5] * channels
        self.std = list(std) if std is not None else [0.5] * channels
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(
                f"video preprocessing: mean and std need one value per channel ({channels}), "
                f"got {self.mean} and {self.std}"
            )
        self.augment_enabled, self.crop_scale_min, self.flip = augment, crop_scale_min, flip
        self.color_jitter, self.temporal_jitter = color_jitter, temporal_jitter
        self.max_pixels, self.max_seconds = max_pixels, max_seconds
        self.max_frames, self.max_file_mb = max_frames, max_file_mb

    def options(self) -> dict[str, Any]:
        # the `augment` option is stored as `augment_enabled` (the name `augment` is the method)
        keys = ("num_frames", "fps", "image_size", "channels", "resize", "mean", "std",
                "folder_fps", "crop_scale_min", "flip", "color_jitter", "temporal_jitter",
                "max_pixels", "max_seconds", "max_frames", "max_file_mb")  # fmt: skip
        return {**{k: getattr(self, k) for k in keys}, "augment": self.augment_enabled}

    @property
    def limits(self) -> Limits:
        return Limits(self.max_pixels, self.max_seconds, self.max_frames,
                      int(self.max_file_mb * 2**20))  # fmt: skip

    @property
    def sampling(self) -> Sampling:
        return Sampling(self.num_frames, self.fps, self.image_size, self.channels, self.resize,
                        self.folder_fps)  # fmt: skip

    def frames(self, target: bytes | Path) -> torch.Tensor:
        """One clip (file bytes, a file or a folder of frames) -> uint8 (T, C, H, W)."""
        arr = read_clip(target, self.sampling, self.limits)  # (T, H, W, C)
        return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()

    def normalise(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (..., C, H, W) -> float (..., C, H, W), ``(x / 255 - mean) / std``."""
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        return (frames.float() / 255.0 - mean) / std

    def decode(self, target: bytes | Path) -> torch.Tensor:
        return self.normalise(self.frames(target))  # (T, C, H, W)

    def transform(
        self,
        frame: pd.DataFrame,
        columns: list[str],
        base_dir: Path,
        source: str = "<table>",
        bad_cells: str = "raise",
        access: FileAccess = ANYWHERE,
    ) -> Transformed:
        s = self.image_size
        empty = torch.zeros(self.num_frames, self.channels, s, s)
        # uint8 frames per clip, normalised a chunk of clips at a time: one tensor operation per
        # 32 clips, not several per clip (small ones cost most on a busy CPU)
        return decode_column(
            frame[columns[0]], base_dir, self.frames, empty, EXPECTED, source, bad_cells,
            finish=self.normalise, chunk=32, access=access,
        )  # fmt: skip

    # -- augmentation ------------------------------------------------------------------------
    @property
    def augments(self) -> bool:
        return bool(self.augment_enabled)

    def augment(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A batch (B, T, C, H, W): one draw per clip, applied to all its frames."""
        if not self.augment_enabled:
            return x
        b, t, c, h, w = x.shape

        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=generator)

        x = _temporal_jitter(x, self.temporal_jitter, rand)
        scale = torch.sqrt(self.crop_scale_min + (1 - self.crop_scale_min) * rand(b))
        flip = torch.where(rand(b) < 0.5, -1.0, 1.0) if self.flip else torch.ones(b)
        shift = [(1 - scale) * (rand(b) * 2 - 1) for _ in range(2)]
        zero = torch.zeros(b)
        theta = torch.stack(
            [
                torch.stack([scale * flip, zero, shift[0]], 1),
                torch.stack([zero, scale, shift[1]], 1),
            ],
            1,
        )  # fmt: skip  (B, 2, 3)
        theta = theta.repeat_interleave(t, 0).to(x.dtype).to(x.device)  # the same for each frame
        flat = x.reshape(b * t, c, h, w)
        grid = F.affine_grid(theta, [b * t, c, h, w], align_corners=False)
        flat = F.grid_sample(flat, grid, padding_mode="border", align_corners=False)
        out = flat.reshape(b, t, c, h, w)
        j = self.color_jitter
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 1, c, 1, 1)
        contrast = (1 + j * (rand(b) * 2 - 1)).view(b, 1, 1, 1, 1).to(x.device)
        bright = (j * (rand(b) * 2 - 1)).view(b, 1, 1, 1, 1).to(x.device) / std  # pixel units
        mean = out.mean(dim=(1, 3, 4), keepdim=True)  # the clip's mean per channel
        return (out - mean) * contrast + mean + bright

    def spec(self) -> dict[str, Any]:
        return {"in_channels": self.channels, "image_size": self.image_size,
                "num_frames": self.num_frames}  # fmt: skip


def _temporal_jitter(x: torch.Tensor, reach: int, rand: Any) -> torch.Tensor:
    """Each of the T slots takes the frame up to ``reach`` slots away, order kept (sorted)."""
    b, t = x.shape[:2]
    if reach <= 0 or t < 2:
        return x
    moves = torch.floor(rand(b, t) * (2 * reach + 1)).long() - reach  # (B, T) in [-reach, reach]
    idx = (torch.arange(t) + moves).clamp(0, t - 1).sort(dim=1).values.to(x.device)
    return x[torch.arange(b, device=x.device)[:, None], idx]


def _check(
    num_frames: int,
    fps: float | None,
    channels: int,
    resize: str,
    crop_scale_min: float,
    temporal_jitter: int,
) -> None:
    where = "video preprocessing"
    if num_frames < 1:
        raise ValueError(f"{where}: num_frames must be at least 1, got {num_frames}")
    if fps is not None and not fps > 0:
        raise ValueError(f"{where}: fps must be positive (or null), got {fps}")
    if channels not in (1, 3):
        raise ValueError(f"{where}: channels must be 1 or 3, got {channels}")
    if resize not in RESIZES:
        raise ValueError(f"{where}: resize must be one of {', '.join(RESIZES)}, got {resize!r}")
    if not 0 < crop_scale_min <= 1 or temporal_jitter < 0:
        raise ValueError(
            f"{where}: crop_scale_min must be in (0, 1] and temporal_jitter at least 0, got "
            f"{crop_scale_min} and {temporal_jitter}"
        )


__all__ = ["VideoPreprocessor"]
