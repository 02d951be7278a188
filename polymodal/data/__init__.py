"""Data: reading tables, inferring modalities, per-modality preprocessors (fitted on the training
split, state in JSON), targets, splits, and the in-memory dataset."""

from polymodal.data.base import DataError, Preprocessor, Transformed
from polymodal.data.dataset import TableDataset, collate_batch
from polymodal.data.infer import infer_modality, infer_task, starter_config
from polymodal.data.io import read_table, table_base_dir
from polymodal.data.pipeline import TablePipeline
from polymodal.data.preprocess import (
    AudioPreprocessor,
    CategoricalPreprocessor,
    ImagePreprocessor,
    NumericPreprocessor,
    TextPreprocessor,
)
from polymodal.data.split import split_frame
from polymodal.data.targets import TargetEncoder, class_weights_balanced

__all__ = [
    "AudioPreprocessor",
    "CategoricalPreprocessor",
    "DataError",
    "ImagePreprocessor",
    "NumericPreprocessor",
    "Preprocessor",
    "TableDataset",
    "TablePipeline",
    "TargetEncoder",
    "TextPreprocessor",
    "Transformed",
    "class_weights_balanced",
    "collate_batch",
    "infer_modality",
    "infer_task",
    "read_table",
    "split_frame",
    "starter_config",
    "table_base_dir",
]
