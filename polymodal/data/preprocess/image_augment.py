"""Batched train-time image augmentation: one affine warp (random resized crop, flip, rotation)
and a colour change (brightness, contrast, saturation, greyscale), from a (B, N) table of
uniform draws.

With ``views = n`` the draws of a row come from a generator seeded by the row's own pixels and a
view number drawn per row among ``0..n`` (0: the row unchanged). Each row then has only ``n + 1``
possible versions, the same in every epoch, so a frozen encoder's feature cache (which keys rows
by their bytes) serves them after their first pass: augmentation at ``n + 1`` encoder passes per
row in all, instead of one per row per epoch.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# columns of the draw table: crop scale, angle, flip, shift x, shift y, contrast, brightness,
# saturation, greyscale
DRAWS = 9
MAX_VIEWS = 255  # the view number is one byte of a row's seed
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B


@dataclass(frozen=True)
class ImageAugment:
    crop_scale_min: float
    flip: bool
    rotation_degrees: float
    color_jitter: float
    grayscale: float
    views: int

    def __call__(
        self,
        x: torch.Tensor,
        mean: list[float],
        std: list[float],
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """A normalised batch (B, C, H, W) -> its augmented versions, same shape."""
        u, keep = draws(x, self.views, generator)
        out = self.warp(x, u)
        if self.color_jitter > 0 or (self.grayscale > 0 and x.shape[1] == 3):
            out = self.colour(out, u, mean, std)
        return torch.where(keep.view(-1, 1, 1, 1).to(x.device), x, out) if keep.any() else out

    def warp(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Random resized crop + flip + rotation, as one ``affine_grid`` call."""
        b = x.shape[0]
        scale = torch.sqrt(self.crop_scale_min + (1 - self.crop_scale_min) * u[:, 0])
        angle = (u[:, 1] * 2 - 1) * math.radians(self.rotation_degrees)
        flip = torch.where(u[:, 2] < 0.5, -1.0, 1.0) if self.flip else torch.ones(b)
        shift = (1 - scale) * (u[:, 3] * 2 - 1), (1 - scale) * (u[:, 4] * 2 - 1)
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        theta = torch.stack(
            [
                torch.stack([cos * flip, -sin, shift[0]], 1),
                torch.stack([sin * flip, cos, shift[1]], 1),
            ],
            1,
        )  # fmt: skip  (B, 2, 3)
        grid = F.affine_grid(theta.to(x.dtype).to(x.device), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, padding_mode="border", align_corners=False)

    def colour(
        self, x: torch.Tensor, u: torch.Tensor, mean: list[float], std: list[float]
    ) -> torch.Tensor:
        """Saturation, greyscale, contrast and brightness in pixel units ([0, 1]), clipped."""
        b, c = x.shape[:2]
        m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, c, 1, 1)
        s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, c, 1, 1)
        j = self.color_jitter

        def factor(col: int, reach: float) -> torch.Tensor:
            return (1 + reach * (u[:, col] * 2 - 1)).view(b, 1, 1, 1).to(x.dtype).to(x.device)

        p = x * s + m
        if c == 3:
            luma = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            grey = (p * luma).sum(1, keepdim=True)
            p = grey + (p - grey) * factor(7, j)
            to_grey = (u[:, 8] < self.grayscale).view(b, 1, 1, 1).to(x.device)
            p = torch.where(to_grey, grey.expand_as(p), p)
        level = p.mean(dim=(1, 2, 3), keepdim=True)
        p = level + (p - level) * factor(5, j) + (factor(6, j / 2) - 1)
        return (p.clamp(0.0, 1.0) - m) / s


def draws(
    x: torch.Tensor, views: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, DRAWS) uniform draws and (B,) which rows stay unchanged. ``views`` 0: fresh draws from
    ``generator``; else each row's draws depend only on its pixels and its view (0..views)."""
    b = x.shape[0]
    if views <= 0:
        return torch.rand(b, DRAWS, generator=generator), torch.zeros(b, dtype=torch.bool)
    view = torch.randint(0, views + 1, (b,), generator=generator)
    rows = x.detach().cpu().contiguous().reshape(b, -1).view(torch.uint8).numpy()
    u = torch.empty(b, DRAWS)
    for i in range(b):
        digest = hashlib.blake2b(rows[i].tobytes() + bytes([int(view[i])]), digest_size=8)
        g = torch.Generator().manual_seed(int.from_bytes(digest.digest(), "little") >> 1)
        u[i] = torch.rand(DRAWS, generator=g)
    return u, view == 0


__all__ = ["DRAWS", "MAX_VIEWS", "ImageAugment", "draws"]
