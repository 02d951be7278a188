"""Saving and loading models without pickle (safetensors + JSON/YAML)."""

from polymodal.export.artifact import Artifact, load_artifact, save_artifact

__all__ = ["Artifact", "load_artifact", "save_artifact"]
