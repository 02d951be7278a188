"""polymodal: from a table of mixed data to a trained, saved multimodal model."""

__version__ = "0.1.0"
