"""Task heads, registered as ``("head", task)``: each owns its loss and its decoding."""

from polymodal.heads.base import Head
from polymodal.heads.caption import CaptionHead
from polymodal.heads.classification import BinaryHead, MulticlassHead, MultilabelHead
from polymodal.heads.regression import RegressionHead
from polymodal.heads.retrieval import RetrievalHead

__all__ = [
    "BinaryHead",
    "CaptionHead",
    "Head",
    "MulticlassHead",
    "MultilabelHead",
    "RegressionHead",
    "RetrievalHead",
]
