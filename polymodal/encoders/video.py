"""Video encoders over (B, T, C, H, W) clips of normalised frames (see
:mod:`polymodal.data.preprocess.video`); every slot holds a real frame (short clips repeat
frames), so nothing here masks frames, and a missing clip (all zeros) gives a finite vector.

- ``video_frames``: any registered image encoder applied to every frame, then a temporal model
  over the (B, T, D) frame features: ``mean`` / ``max`` pooling, a ``gru`` (its last state), a
  small ``transformer`` (sinusoidal positions, mean over frames) or ``diff`` (the frames' mean
  feature beside the mean signed and absolute change between consecutive frames: motion and its
  direction). A frozen frame encoder (``efficientnet_lite``) is a stage the feature cache runs
  once per distinct frame (:meth:`VideoFrames.cached_stage`), while the temporal model trains.
- ``video_r21d``: a small (2+1)-D CNN trained from scratch: each block a spatial 1xkxk convolution
  then a temporal kx1x1 one (R(2+1)D, Tran et al. 2018), spatial pooling between blocks, global
  average pooling over time and space.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from polymodal import registry
from polymodal.encoders.base import Encoder
from polymodal.encoders.cache import is_frozen
from polymodal.layers import SinusoidalPositionalEmbedding, TransformerLayer, norm_layer
from polymodal.registry import register

TEMPORAL = ("mean", "max", "gru", "transformer", "diff")
FRAME_SPEC = ("image_size", "channels", "mean", "std")  # what a frame encoder may ask of frames


class VideoEncoder(Encoder):
    modalities: ClassVar[tuple[str, ...]] = ("video",)


def _frame_config(frame_encoder: dict[str, Any] | None) -> dict[str, Any]:
    return {"type": "image_cnn", **(frame_encoder or {})}


class Temporal(nn.Module):
    """(B, T, D) frame features -> (B, out_dim)."""

    def __init__(self, kind: str, dim: int, hidden: int, layers: int, heads: int) -> None:
        super().__init__()
        if kind not in TEMPORAL:
            raise ValueError(
                f"video_frames: unknown temporal {kind!r}; valid choices: {', '.join(TEMPORAL)}"
            )
        self.kind = kind
        self.out_dim = dim if kind in ("mean", "max") else hidden
        if kind == "gru":
            self.gru = nn.GRU(dim, hidden, num_layers=layers, batch_first=True)
        elif kind == "transformer":
            self.proj = nn.Linear(dim, hidden)
            self.positions = SinusoidalPositionalEmbedding(hidden)
            self.layers = nn.ModuleList(
                TransformerLayer(hidden, heads, 2 * hidden) for _ in range(layers)
            )
            self.norm = nn.LayerNorm(hidden)
        elif kind == "diff":
            self.mix = nn.Sequential(nn.Linear(3 * dim, hidden), nn.ReLU())

    def forward(self, f: Tensor) -> Tensor:
        if self.kind == "mean":
            return f.mean(1)
        if self.kind == "max":
            return f.amax(1)
        if self.kind == "gru":
            _, h = self.gru(f)  # (layers, B, hidden)
            return h[-1]
        if self.kind == "transformer":
            h = self.positions(self.proj(f))  # (B, T, hidden)
            keep = torch.ones_like(h[..., 0], dtype=torch.bool)  # every slot is a real frame
            for layer in self.layers:
                h = layer(h, keep)
            return self.norm(h).mean(1)
        d = f[:, 1:] - f[:, :-1] if f.shape[1] > 1 else torch.zeros_like(f)  # (B, T-1, D)
        return self.mix(torch.cat([f.mean(1), d.mean(1), d.abs().mean(1)], dim=-1))


@register("encoder", "video_frames")
class VideoFrames(VideoEncoder):
    """A registered image encoder on every frame, then a temporal model over the frames."""

    def __init__(
        self,
        frame_encoder: dict[str, Any] | None = None,  # {type, ...} of an image encoder
        temporal: str = "mean",  # mean | max | gru | transformer | diff
        hidden: int = 128,  # width of the gru / transformer / diff output
        layers: int = 1,  # gru or transformer layers
        heads: int = 4,  # transformer heads
        dropout: float = 0.1,
        in_channels: int = 3,
        image_size: int = 64,
    ) -> None:
        super().__init__()
        config = _frame_config(frame_encoder)
        cls = registry.get("encoder", config["type"])
        if "image" not in getattr(cls, "modalities", ()):
            raise registry.RegistryError(
                f"video_frames: frame_encoder {config['type']!r} does not encode images; valid "
                f"choices: {', '.join(_image_encoders())}"
            )
        self.frames = registry.build(
            "encoder", config, where="video_frames.frame_encoder", modality="image",
            in_channels=in_channels, image_size=image_size,
        )  # fmt: skip
        self.temporal = Temporal(temporal, int(self.frames.out_dim), hidden, layers, heads)
        self.dropout = nn.Dropout(dropout)
        self.out_dim = self.temporal.out_dim

    @property
    def frozen(self) -> bool:
        """The frame encoder's: explanations unfreeze it to reach the pixels."""
        return bool(getattr(self.frames, "frozen", False))

    @frozen.setter
    def frozen(self, value: bool) -> None:
        if hasattr(self.frames, "frozen"):
            self.frames.frozen = value

    @classmethod
    def input_spec(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """What the frame encoder asks of its images (size, channels, normalisation)."""
        config = _frame_config(kwargs.get("frame_encoder"))
        frame_cls = registry.get("encoder", config["type"])
        rest = {k: v for k, v in config.items() if k != "type"}
        spec = frame_cls.input_spec({**rest, "modality": "image"})  # type: ignore[attr-defined]
        return {k: v for k, v in spec.items() if k in FRAME_SPEC}

    def cached_stage(self) -> nn.Module | None:
        """The frame encoder when it is frozen: the feature cache may run it once per frame."""
        return self.frames if is_frozen(self.frames) else None

    def pieces(self, x: Tensor) -> Tensor:
        return x.flatten(0, 1)  # (B, T, C, H, W) -> (B * T, C, H, W)

    def from_pieces(self, features: Tensor, x: Tensor) -> Tensor:
        """(B * T, D) frame features -> (B, out_dim)."""
        f = features.reshape(x.shape[0], x.shape[1], -1)  # (B, T, D)
        return self.dropout(self.temporal(f))

    def forward(self, x: Tensor) -> Tensor:
        return self.from_pieces(self.frames(self.pieces(x)), x)


def _image_encoders() -> list[str]:
    return [
        n
        for n in registry.names("encoder")
        if "image" in getattr(registry.get("encoder", n), "modalities", ())
    ]


class R21Block(nn.Module):
    """Spatial 1xkxk conv, norm, ReLU, temporal kx1x1 conv, norm, ReLU: (B, C, T, H, W)."""

    def __init__(self, cin: int, cout: int, kernel: int, temporal_kernel: int, norm: str) -> None:
        super().__init__()
        pad, tpad = kernel // 2, temporal_kernel // 2
        self.net = nn.Sequential(
            nn.Conv3d(cin, cout, (1, kernel, kernel), padding=(0, pad, pad), bias=norm == "none"),
            norm_layer(norm, cout, 3),
            nn.ReLU(inplace=True),
            nn.Conv3d(
                cout, cout, (temporal_kernel, 1, 1), padding=(tpad, 0, 0), bias=norm == "none"
            ),
            norm_layer(norm, cout, 3),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@register("encoder", "video_r21d")
class VideoR21D(VideoEncoder):
    """A small (2+1)-D CNN: one block per width, 2x spatial max-pooling after each but the last,
    global average pooling over time and space, a linear projection."""

    def __init__(
        self,
        in_channels: int = 3,
        channels: Sequence[int] = (16, 32, 64),
        out_dim: int = 128,
        kernel: int = 3,  # spatial kernel
        temporal_kernel: int = 3,
        norm: str = "batch",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for i, width in enumerate(channels):
            layers.append(R21Block(prev, width, kernel, temporal_kernel, norm))
            if i < len(channels) - 1:
                layers.append(nn.MaxPool3d((1, 2, 2), ceil_mode=True))
            prev = width
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(prev, out_dim)
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        h = self.features(x.transpose(1, 2))  # (B, T, C, H, W) -> (B, C', T, H', W')
        return self.proj(self.dropout(h.mean(dim=(2, 3, 4))))  # (B, out_dim)


__all__ = ["VideoFrames", "VideoR21D"]
