"""Per-modality preprocessors, registered as ``("preprocessor", modality)``."""

from polymodal.data.preprocess.audio import AudioPreprocessor
from polymodal.data.preprocess.categorical import CategoricalPreprocessor
from polymodal.data.preprocess.image import ImagePreprocessor
from polymodal.data.preprocess.numeric import NumericPreprocessor
from polymodal.data.preprocess.series import SeriesPreprocessor
from polymodal.data.preprocess.text import TextPreprocessor
from polymodal.data.preprocess.video import VideoPreprocessor

__all__ = [
    "AudioPreprocessor",
    "CategoricalPreprocessor",
    "ImagePreprocessor",
    "NumericPreprocessor",
    "SeriesPreprocessor",
    "TextPreprocessor",
    "VideoPreprocessor",
]
