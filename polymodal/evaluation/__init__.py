"""Metrics (pure functions) and ``evaluate(model, dataset, pipeline) -> report``."""

from polymodal.evaluation.evaluate import evaluate, monitor_value, predict_logits

__all__ = ["evaluate", "monitor_value", "predict_logits"]
