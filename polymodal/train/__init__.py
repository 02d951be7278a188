"""Training: the explicit loop, a pure LR schedule, and pickle-free checkpoints."""

from polymodal.train.loop import TrainState, train

__all__ = ["TrainState", "train"]
