"""Fusion methods, registered as ``("fusion", name)``. Contract:
``forward(features: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor`` with keys sorted,
masks honoured, ``out_dim`` set."""

from polymodal.fusion.attention import AttentionFusion
from polymodal.fusion.concat import ConcatFusion
from polymodal.fusion.late import LateFusion
from polymodal.fusion.product import ProductFusion
from polymodal.fusion.tensor import LowRankFusion, TensorFusion
from polymodal.fusion.weighted import GatedFusion, WeightedSumFusion

__all__ = [
    "AttentionFusion",
    "ConcatFusion",
    "GatedFusion",
    "LateFusion",
    "LowRankFusion",
    "ProductFusion",
    "TensorFusion",
    "WeightedSumFusion",
]
