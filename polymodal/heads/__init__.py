"""Task heads, registered as ``("head", task)``: each owns its loss and its decoding."""

from polymodal.heads.base import Head
from polymodal.heads.classification import BinaryHead, MulticlassHead, MultilabelHead
from polymodal.heads.regression import RegressionHead

__all__ = ["BinaryHead", "Head", "MulticlassHead", "MultilabelHead", "RegressionHead"]
