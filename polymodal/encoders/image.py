"""Image encoders trained from scratch on normalised images (B, C, H, W).

Both end in global average pooling, so any image size works and the output size is fixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from torch import Tensor, nn

from polymodal.encoders.base import Encoder
from polymodal.layers import ConvStack, ResidualBlock, norm2d
from polymodal.registry import register


@register("encoder", "image_cnn")
class ImageCNN(Encoder):
    """A LeNet/VGG-style stack (conv-norm-ReLU-maxpool per width) and a linear projection:
    enough for digits and icons, cheap on a CPU."""

    modalities: ClassVar[tuple[str, ...]] = ("image",)

    def __init__(
        self,
        in_channels: int = 3,
        channels: Sequence[int] = (32, 64, 128),
        out_dim: int = 128,
        norm: str = "batch",
        dropout: float = 0.1,
        pool: str = "global",  # "global" (any size) or "flatten" (keep the layout; fixed size)
        image_size: int = 224,
    ) -> None:
        super().__init__()
        if pool not in ("global", "flatten"):
            raise ValueError(f"image_cnn: pool must be 'global' or 'flatten', got {pool!r}")
        self.features = ConvStack(
            in_channels, channels, norm=norm, pool=pool, height=image_size, width=image_size
        )
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(self.features.out_dim, out_dim)
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.dropout(self.features(x)))  # (B, C, H, W) -> (B, out_dim)


@register("encoder", "resnet")
class ResNet(Encoder):
    """A small ResNet (basic blocks, no ImageNet stem): stage ``i`` has ``widths[i]`` channels and
    halves the resolution after the first stage. Deeper than ``image_cnn`` at similar cost."""

    modalities: ClassVar[tuple[str, ...]] = ("image",)

    def __init__(
        self,
        in_channels: int = 3,
        widths: Sequence[int] = (32, 64, 128),
        blocks: int | Sequence[int] = 1,  # residual blocks per stage (one number or one per stage)
        norm: str = "batch",
    ) -> None:
        super().__init__()
        per_stage = [blocks] * len(widths) if isinstance(blocks, int) else list(blocks)
        if len(per_stage) != len(widths):
            raise ValueError(f"resnet: blocks {blocks} must give one count per width in {widths}")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
            norm2d(norm, widths[0]),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        prev = widths[0]
        for i, (width, count) in enumerate(zip(widths, per_stage, strict=True)):
            for j in range(count):
                stride = 2 if i > 0 and j == 0 else 1
                stages.append(ResidualBlock(prev, width, stride=stride, norm=norm))
                prev = width
        self.stages = nn.Sequential(*stages)
        self.out_dim = widths[-1]

    def forward(self, x: Tensor) -> Tensor:
        h = self.stages(self.stem(x))  # (B, widths[-1], H', W')
        return h.mean(dim=(2, 3))  # (B, widths[-1])
