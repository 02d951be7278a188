"""polymodal: from a table of mixed data to a trained, saved multimodal model.

from polymodal import Predictor
Predictor("config.yaml").fit("train.csv").predict("new.csv")
"""

from polymodal.registry import register

__version__ = "0.1.0"
__all__ = ["Predictor", "__version__", "register"]


def __getattr__(name: str) -> object:
    # Lazy: `import polymodal.config` stays light (no torch); Predictor pulls in the rest.
    if name == "Predictor":
        from polymodal.api import Predictor

        return Predictor
    raise AttributeError(f"module 'polymodal' has no attribute {name!r}")
