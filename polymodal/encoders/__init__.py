"""Encoders: one input's batch tensor -> (B, out_dim). Importing this package registers them all
as ``("encoder", name)``: bow, fasttext, text_cnn, bigru, transformer (text); image_cnn, resnet
(image); audio_cnn (audio); mlp (numeric); embedding (categorical); series_cnn, series_gru,
patchtst, minirocket (timeseries); video_frames, video_r21d (video); hf, minilm,
efficientnet_lite (pretrained)."""

from polymodal.encoders.audio import AudioCNN
from polymodal.encoders.base import Encoder
from polymodal.encoders.efficientnet import EfficientNetLite
from polymodal.encoders.hf import HFEncoder, MiniLM
from polymodal.encoders.image import ImageCNN, ResNet
from polymodal.encoders.minirocket import MiniRocket
from polymodal.encoders.series import PatchTST, SeriesCNN, SeriesGRU
from polymodal.encoders.tabular import CategoricalEmbedding, NumericMLP
from polymodal.encoders.text import BagOfEmbeddings, BiGRU, FastText, TextCNN, TextTransformer
from polymodal.encoders.video import VideoFrames, VideoR21D

__all__ = [
    "AudioCNN",
    "BagOfEmbeddings",
    "BiGRU",
    "CategoricalEmbedding",
    "EfficientNetLite",
    "Encoder",
    "FastText",
    "HFEncoder",
    "ImageCNN",
    "MiniLM",
    "MiniRocket",
    "NumericMLP",
    "PatchTST",
    "ResNet",
    "SeriesCNN",
    "SeriesGRU",
    "TextCNN",
    "TextTransformer",
    "VideoFrames",
    "VideoR21D",
]
