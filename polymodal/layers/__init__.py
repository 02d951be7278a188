"""Small shared torch blocks used by encoders, fusion methods and heads (torch only)."""

from polymodal.layers.conv import ConvBlock, ConvStack, ResidualBlock, norm2d, norm_layer
from polymodal.layers.mlp import MLP, make_activation
from polymodal.layers.pooling import masked_max, masked_mean
from polymodal.layers.positional import LearnedPositionalEmbedding, SinusoidalPositionalEmbedding
from polymodal.layers.transformer import TransformerLayer

__all__ = [
    "MLP",
    "ConvBlock",
    "ConvStack",
    "LearnedPositionalEmbedding",
    "ResidualBlock",
    "SinusoidalPositionalEmbedding",
    "TransformerLayer",
    "make_activation",
    "masked_max",
    "masked_mean",
    "norm2d",
    "norm_layer",
]
