"""Audio encoders trained from scratch on log-mel spectrograms (B, n_mels, T)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from torch import Tensor, nn

from polymodal.encoders.base import Encoder
from polymodal.layers import ConvStack
from polymodal.registry import register


@register("encoder", "audio_cnn")
class AudioCNN(Encoder):
    """The spectrogram as a 1-channel image through a conv stack with global pooling, so clips of
    any length give one vector; the usual strong baseline for short sounds and spoken words."""

    modalities: ClassVar[tuple[str, ...]] = ("audio",)

    def __init__(
        self,
        channels: Sequence[int] = (16, 32, 64),
        out_dim: int = 128,
        norm: str = "batch",
        dropout: float = 0.1,
        pool: str = "global",  # "global"; "freq": average over time only, keep mel positions
        n_mels: int = 64,
    ) -> None:
        super().__init__()
        if pool not in ("global", "freq"):
            raise ValueError(f"audio_cnn: pool must be 'global' or 'freq', got {pool!r}")
        stack_pool = "width" if pool == "freq" else "global"
        self.features = ConvStack(1, channels, norm=norm, pool=stack_pool, height=n_mels)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(self.features.out_dim, out_dim)
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3:
            raise ValueError(
                f"audio_cnn expects log-mel features (B, n_mels, T), got shape {tuple(x.shape)}; "
                "do not set preprocessing features: waveform for this encoder"
            )
        h = self.features(x.unsqueeze(1))  # (B, 1, n_mels, T) -> (B, C)
        return self.proj(self.dropout(h))  # (B, out_dim)
