"""Assembly of registered blocks into a model (``MultimodalModel``) and the config factory."""

from polymodal.models.factory import build_model, preprocessing_options, render_defaults, validate
from polymodal.models.multimodal import MODALITY_SUFFIX, MultimodalModel

__all__ = [
    "MODALITY_SUFFIX",
    "MultimodalModel",
    "build_model",
    "preprocessing_options",
    "render_defaults",
    "validate",
]
