"""Explanations of a time-series input (a preprocessor with ``channel_names``: tensors (T, C + 1)
whose last channel is the step mask):

- a time x channel attribution map of the whole series (integrated gradients or gradient x
  input over the C value channels; the step mask is held as it is, never attributed, so the path
  from the baseline never passes through "no series"); a windowed input is attributed through
  all of its windows at once (the row's score is the mean of its windows'), so overlapping
  windows add up at the steps they share;
- per-channel occlusion: each channel in turn set to its training mean (0 after
  standardisation) on every step, and how much the explained class's probability (regression:
  the prediction) falls. It needs no gradient, so encoders without one (MiniRocket) get it too;
  :func:`channel_importance` gives the same per channel over a whole table (the drop of each
  output's main metric), for reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from polymodal.data.dataset import TableDataset
from polymodal.data.pipeline import TablePipeline
from polymodal.evaluation import windows as W
from polymodal.evaluation.attribution import Row, attribute, gradients_through
from polymodal.evaluation.importance import focus, fuse_all, main_metric, scored_outputs
from polymodal.evaluation.metrics import HIGHER_IS_BETTER
from polymodal.evaluation.robustness import MAIN_METRIC
from polymodal.models import MultimodalModel

MAX_STEPS = 256  # time bins of a map in the JSON (the plot keeps every step)


def is_series(pre: Any) -> bool:
    """Whether a preprocessor makes (T, C + 1) series tensors with a step-mask channel."""
    return callable(getattr(pre, "channel_names", None))


def whole_series(
    pipeline: TablePipeline, name: str, frame: pd.DataFrame, r: int, base_dir: Path, source: str
) -> Tensor:
    """Row ``r``'s series as one tensor (T, C + 1): what a windowed input's windows are cut
    from (read again without windows)."""
    pre = pipeline.preprocessors[name]
    cols = next(i.cols for i in pipeline.inputs if i.name == name)
    whole = pre.whole()  # type: ignore[attr-defined]
    t = whole.transform(
        frame.iloc[[r]], cols, base_dir, source, pipeline.bad_cells, pipeline.access
    )
    return t.rows(torch.tensor([0]))[0]  # type: ignore[no-any-return]


def attribute_series(
    row: Row, name: str, x: Tensor, pre: Any, target: int, method: str, steps: int
) -> tuple[Tensor, float | None]:
    """(T, C) attributions of the whole series ``x`` (T, C + 1) to class ``target``, and the
    integrated-gradients convergence delta."""
    model = row.model
    encoder = model.encoders[model.tied.get(name, name)]
    mask = x[None, :, -1:]  # (1, T, 1): held fixed
    windowed = bool(getattr(pre, "windowed", False))

    def forward(values: Tensor) -> Tensor:  # (n, T, C) -> (n, classes)
        full = torch.cat([values, mask.expand(len(values), -1, -1)], dim=-1)
        if not windowed:
            return row.scores(name, encoder(full))
        windows = torch.cat([pre.cut(series) for series in full])  # (n * k, w, C + 1)
        return row.scores(name, encoder(windows), per_window=True)

    values = x[None, :, :-1]
    with gradients_through(encoder):
        attrs, delta = attribute(forward, (values,), (torch.zeros_like(values),), target, method,
                                 steps)  # fmt: skip
    return attrs[0][0], delta


@torch.no_grad()
def channel_occlusion(
    row: Row, name: str, x: Tensor, pipeline: TablePipeline, target: int | None
) -> list[float]:
    """Per channel, the fall of the explained class's probability (multilabel: the mean
    absolute change; regression: of the prediction) when that channel is set to 0 (its
    training mean) on every step of ``x``: the input's tensors for the row, (k, T, C + 1) per
    window of a windowed row, else (1, T, C + 1)."""
    model = row.model
    encoder = model.encoders[model.tied.get(name, name)]
    channels = x.shape[-1] - 1
    variants = [x]
    for c in range(channels):
        occluded = x.clone()
        occluded[..., c] = 0.0
        variants.append(occluded)
    z = encoder(torch.cat(variants))  # ((C + 1) * k', D)
    per_window = len(x) == row.windows and row.windows > 1
    logits = row.logits(name, z, per_window)  # ((C + 1) * k, ...)
    task = row.task
    groups = torch.arange(channels + 1).repeat_interleave(row.windows)
    rows = W.aggregate_logits(task, logits, groups, channels + 1)
    pred = None if target is None else torch.full((channels + 1,), target, dtype=torch.long)
    value, _ = focus(model, row.output, rows, pipeline, pred)  # (C + 1, K)
    delta = value[:1] - value[1:]
    delta = delta.abs().mean(-1) if task == "multilabel" else delta.mean(-1)
    return [round(float(v), 6) for v in delta]


def describe_series(
    pre: Any, attrs: Tensor | None, x: Tensor, occlusion: list[float]
) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray] | None]:
    """The JSON summary of a series input's explanation and, with attributions, the (T, C)
    values and attribution map to draw."""
    names = list(pre.channel_names())
    info: dict[str, Any] = {
        "channels": names,
        "channel_occlusion": dict(zip(names, occlusion, strict=True)),
    }
    if attrs is None:
        return info | {"kind": "channels"}, None
    heat = attrs.numpy()  # (T, C)
    info |= {
        "kind": "time_channel",
        "total": float(heat.sum()),
        "abs_total": float(np.abs(heat).sum()),
        "shape": list(heat.shape),
        "values": _pool_time(heat).round(6).tolist(),  # (T', C), T' <= MAX_STEPS
        "channel_attribution": {
            n: round(float(v), 6) for n, v in zip(names, heat.sum(0), strict=True)
        },
        "channel_abs": {
            n: round(float(v), 6) for n, v in zip(names, np.abs(heat).sum(0), strict=True)
        },
    }
    return info, (x[:, :-1].numpy(), heat)


@torch.no_grad()
def channel_importance(
    model: MultimodalModel,
    dataset: TableDataset,
    pipeline: TablePipeline,
    encoded: tuple[dict[str, Tensor], dict[str, Tensor]],
    batch_size: int = 256,
) -> dict[str, Any]:
    """Per series input and channel, the drop of each output's main metric when that channel
    is set to its training mean (0) on every step of every row: ``{input: {"channels": [...],
    "drop": {output: [per channel]}}}`` plus the metric names and baselines. Only the series'
    encoder runs again; the other inputs' embeddings (``encoded``) are reused."""
    emb, masks = encoded
    row_of, n = dataset.row_of, dataset.n_rows
    outputs = scored_outputs(model)
    targets = dataset.targets if row_of is None else W.row_targets(dataset.targets, row_of, n)

    def metrics(embeddings: dict[str, Tensor]) -> dict[str, float | None]:
        logits = fuse_all(model, embeddings, masks)
        if row_of is not None:
            logits = W.to_rows(model, logits, row_of, n)
        return {o: main_metric(model, o, logits[o], targets[o], pipeline) for o in outputs}

    base = metrics(emb)
    result: dict[str, Any] = {"metric": {o: MAIN_METRIC[t] for o, t in outputs.items()},
                              "baseline": base, "n_rows": n, "inputs": {}}  # fmt: skip
    for name in model.inputs:
        pre = pipeline.preprocessors[name]
        if not is_series(pre):
            continue
        encoder = model.encoders[model.tied.get(name, name)]
        t = dataset.inputs[name]
        names = list(pre.channel_names())  # type: ignore[attr-defined]
        drops: dict[str, list[float | None]] = {o: [] for o in outputs}
        for c in range(len(names)):
            parts = []
            for start in range(0, len(dataset), batch_size):
                x = t.rows(torch.arange(start, min(start + batch_size, len(dataset)))).clone()
                x[..., c] = 0.0
                parts.append(encoder(x).float())
            got = metrics({**emb, name: torch.cat(parts)})
            for o in outputs:
                higher = HIGHER_IS_BETTER[MAIN_METRIC[outputs[o]]]
                b, v = base[o], got[o]
                drops[o].append(None if b is None or v is None else (b - v if higher else v - b))
        result["inputs"][name] = {"channels": names, "drop": drops}
    return result


def _pool_time(values: np.ndarray) -> np.ndarray:
    """(T, C) averaged over runs of steps so that at most ``MAX_STEPS`` remain."""
    factor = int(np.ceil(len(values) / MAX_STEPS))
    if factor <= 1:
        return values
    cut = len(values) // factor * factor
    return values[:cut].reshape(-1, factor, values.shape[1]).mean(1)


__all__ = [
    "attribute_series",
    "channel_importance",
    "channel_occlusion",
    "describe_series",
    "is_series",
    "whole_series",
]
