"""2D convolution blocks shared by the image and audio (log-mel as a 1-channel image) encoders,
and the normalisation choice every convolutional encoder (1D, 2D, 3D) shares."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from torch import Tensor, nn

NORMS = ("batch", "group", "none")


def norm_layer(kind: str, channels: int, dims: int = 2) -> nn.Module:
    """BatchNorm{1,2,3}d by default; GroupNorm when batches mix many missing (all-zero) rows
    whose statistics would skew BatchNorm's; none for the smallest models. ``dims``: 1 for
    series (B, C, T), 2 for images, 3 for video (B, C, T, H, W)."""
    if kind == "batch":
        return (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[dims - 1](channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; valid choices: {', '.join(NORMS)}")


def norm2d(kind: str, channels: int) -> nn.Module:
    return norm_layer(kind, channels, 2)


class ConvBlock(nn.Module):
    """``Conv3x3 -> norm -> ReLU -> (MaxPool2)``: one stage of a LeNet/VGG-style stack.

    Pooling uses ``ceil_mode`` so tiny inputs (down to 1x1) never shrink to an empty map.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        pool: bool = True,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=norm == "none"
        )
        self.norm = norm2d(norm, out_channels)
        self.act = nn.ReLU(inplace=True)
        self.pool: nn.Module = nn.MaxPool2d(2, ceil_mode=True) if pool else nn.Identity()

    def chain(self) -> list[nn.Module]:
        """The layers in call order: a plain chain, which structured pruning can shrink."""
        return [self.conv, self.norm, self.act, self.pool]

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.chain():  # (B, C_in, H, W) -> (B, C_out, H', W')
            x = layer(x)
        return x


class ResidualBlock(nn.Module):
    """The ResNet basic block: two 3x3 convs plus a shortcut (1x1 conv when shape changes)."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, norm: str = "batch"
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.norm1 = norm2d(norm, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.norm2 = norm2d(norm, out_channels)
        self.act = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                norm2d(norm, out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.norm1(self.conv1(x)))  # (B, C_out, H/s, W/s)
        out = self.norm2(self.conv2(out))
        return self.act(out + self.shortcut(x))


POOLS = ("global", "width", "flatten")


class ConvStack(nn.Module):
    """``ConvBlock`` per width, then pooling: (B, C, H, W) -> (B, out_dim).

    ``pool="global"`` averages over H and W: the output size does not depend on the input's
    (out_dim = C). ``"width"`` averages over W only and keeps the H' positions (out_dim = C * H'):
    for spectrograms, where the frequency position carries meaning. ``"flatten"`` keeps every
    position (out_dim = C * H' * W', LeNet-style): for small fixed-size images where layout matters.
    ``height`` / ``width`` are the input's size, needed by the position-keeping poolings.
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        norm: str = "batch",
        pool: str = "global",
        height: int | None = None,
        width: int | None = None,
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}; got {pool!r}")
        if (pool != "global" and not height) or (pool == "flatten" and not width):
            raise ValueError(f"pool={pool!r} needs the input's height (and width for 'flatten')")
        widths = [in_channels, *channels]
        self.blocks = nn.Sequential(
            *(ConvBlock(a, b, norm=norm) for a, b in itertools.pairwise(widths))
        )
        self.pool = pool
        shrink = 2 ** len(channels)  # ceil_mode pooling halves each side, rounding up
        kept = {
            "global": 1,
            "width": -(-(height or 1) // shrink),
            "flatten": -(-(height or 1) // shrink) * -(-(width or 1) // shrink),
        }[pool]
        self.out_dim = widths[-1] * kept

    def forward(self, x: Tensor) -> Tensor:
        h = self.blocks(x)  # (B, C, H', W')
        if self.pool == "width":
            return h.mean(dim=3).flatten(1)  # (B, C * H')
        if self.pool == "flatten":
            return h.flatten(1)  # (B, C * H' * W')
        return h.mean(dim=(2, 3))  # (B, C)
