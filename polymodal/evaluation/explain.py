"""Per-row explanations of a trained model: which modality, and which part of it, drove a
prediction.

For each requested row and output:
- ``occlusion``: per modality, how much the explained class's probability (regression: the
  prediction) falls when that modality alone is masked, as if missing;
- ``attributions`` (captum): integrated gradients or gradient x input of the explained class's
  logit, per input: token importance for text, a pixel heat-map for images, a time x frequency
  map over the log-mel for audio, one value per column for numeric and categorical inputs.
  Float inputs are attributed directly (baseline: zeros, i.e. the training mean after
  standardisation / normalisation); token and category ids are attributed through the encoder's
  embedding layer (baseline: the padding / missing id's embedding), summed over the embedding
  dimension;
  A time series gets a time x channel map and per-channel occlusion
  (:mod:`polymodal.evaluation.series_explain`);
- ``attention``: for the ``attention`` fusion, the cross-modal attention weights of the row.

Each input is attributed through its own encoder alone, with the other modalities' embeddings
held fixed, so inputs that share an encoder (``tied``) are attributed separately. A row cut into
windows (a windowed series) is explained as predicted: through all of its windows, its score
the mean of theirs (see :class:`~polymodal.evaluation.attribution.Row`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from polymodal.config import InputConfig
from polymodal.data.base import Transformed
from polymodal.data.dataset import TableDataset
from polymodal.data.pipeline import TablePipeline
from polymodal.evaluation import series_explain as SE
from polymodal.evaluation import windows as W
from polymodal.evaluation.attribution import ExplainError, Row, attribute_input
from polymodal.evaluation.frames import part_occlusion
from polymodal.evaluation.importance import (
    check_output,
    encode_dataset,
    row_importance,
    task_of,
)
from polymodal.models import MultimodalModel
from polymodal.utils.io import write_json

METHODS = ("integrated_gradients", "gradient_x_input", "attention", "occlusion")
GRADIENT_METHODS = ("integrated_gradients", "gradient_x_input")
MAX_MAP_SIDE = 64  # heat-maps larger than this are average-pooled in the JSON (not in the plots)


@dataclass
class Explanation:
    """``summary`` is JSON-ready; ``display`` keeps, per image / audio input, the preprocessed
    array and its full-resolution attribution map for plots (not written to JSON)."""

    summary: dict[str, Any]
    display: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def check_method(model: MultimodalModel, method: str) -> None:
    if method not in METHODS:
        raise ExplainError(f"unknown explanation method {method!r}; valid choices: {METHODS}")
    if method == "attention" and not hasattr(model.fusion, "attention_maps"):
        raise ExplainError(
            "method 'attention' needs a fusion with cross-modal attention (fusion type "
            f"'attention'); this model's fusion is {type(model.fusion).__name__}"
        )
    quantized = [n for n, m in model.named_modules() if "quantized" in type(m).__module__]
    if method in GRADIENT_METHODS and quantized:
        raise ExplainError(
            f"{method} needs gradients, but this model is int8-quantized ({quantized[0]}); "
            "explain the fp32 model it was compressed from, or use method 'occlusion'"
        )


def check_rows(rows: list[int], n: int, source: str) -> None:
    bad = [r for r in rows if not 0 <= r < n]
    if bad:
        raise ExplainError(
            f"{source}: rows {bad} are out of range; the table has {n} rows (positions 0..{n - 1})"
        )
    if not rows:
        raise ExplainError("no rows to explain: pass row positions, e.g. rows=[0, 5, 9]")


def _pool(values: np.ndarray) -> np.ndarray:
    """Average-pool a 2-D map so neither side exceeds ``MAX_MAP_SIDE`` (JSON size)."""
    factor = int(np.ceil(max(values.shape) / MAX_MAP_SIDE))
    if factor <= 1:
        return values
    h, w = (values.shape[0] // factor) * factor, (values.shape[1] // factor) * factor
    return values[:h, :w].reshape(h // factor, factor, w // factor, factor).mean((1, 3))


def _plain(value: Any) -> Any:
    """A table cell as a JSON value."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, (int, float, str, bool)) else str(value)


def _round(values: np.ndarray | list[float]) -> Any:
    return np.round(np.asarray(values, dtype=np.float64), 6).tolist()


def word_level(names: list[str], values: list[float], ngram_min: int, ngram_max: int) -> Any:
    """Hashed n-gram attributions (``w:`` words, ``b:`` bigrams, ``c:`` character n-grams of
    each word in turn) summed per word: a bigram counts half for each of its words."""
    words = [n[2:] for n in names if n.startswith("w:")]
    totals = np.zeros(len(words))
    w = c_word = c_used = 0
    for n, v in zip(names, values, strict=True):
        if n.startswith("w:"):
            totals[w] += v
            w += 1
        elif n.startswith("b:"):
            totals[max(0, w - 2)] += v / 2
            totals[w - 1] += v / 2
        else:  # character n-grams come word by word, all of a word's n-grams together
            while c_word < len(words):
                size = len(words[c_word]) + 2
                count = sum(max(0, size - k + 1) for k in range(ngram_min, ngram_max + 1))
                if c_used < count:
                    break
                c_word, c_used = c_word + 1, 0
            if c_word < len(words):
                totals[c_word] += v
                c_used += 1
    return words, totals.tolist()


def _vector(values: Tensor, limit: int = 512) -> list[float]:
    """A 1-D attribution, average-pooled to at most ``limit`` points for the JSON."""
    v = values.flatten().numpy()
    factor = int(np.ceil(len(v) / limit))
    if factor > 1:
        v = v[: len(v) // factor * factor].reshape(-1, factor).mean(1)
    return list(_round(v))


def _describe(
    inp: InputConfig,
    pipeline: TablePipeline,
    cells: pd.Series,
    attrs: list[Tensor],
    x: Tensor,
) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray] | None]:
    """The JSON summary of one input's attributions, and (for images and audio) the input array
    and the attribution map to draw over it."""
    values = torch.stack([a.reshape(()) for a in attrs]) if len(attrs) > 1 else attrs[0]
    info: dict[str, Any] = {"total": float(values.sum()), "abs_total": float(values.abs().sum())}
    if inp.type == "text":
        pre = pipeline.preprocessors[inp.name]
        tokens = pre.tokens(str(cells.iloc[0])) if hasattr(pre, "tokens") else []
        vals = values.tolist()[: len(tokens)] if tokens else values.tolist()
        tokens = tokens[: len(vals)] or [str(int(t)) for t in x[0][: len(vals)]]
        info |= {"kind": "tokens", "tokens": tokens, "values": _round(vals)}
        if tokens and all(t[:2] in ("w:", "b:", "c:") for t in tokens):  # hashed n-grams
            words, per_word = word_level(tokens, vals, pre.ngram_min, pre.ngram_max)  # type: ignore[attr-defined]
            info |= {"words": words, "word_values": _round(per_word)}
        return info, None
    if inp.type in ("numeric", "categorical"):
        raw = [_plain(v) for v in cells]
        info |= {"kind": "features", "features": list(inp.cols), "inputs": raw}
        return info | {"values": _round(values.flatten().numpy())}, None
    if values.dim() == 4:  # a clip (T, C, H, W): one value per frame (a heat-map: phase 2)
        return info | {"kind": "frames", "values": _round(values.sum((1, 2, 3)).numpy())}, None
    heat = values.sum(0).numpy() if values.dim() == 3 else values.numpy()
    if values.dim() == 3:  # image (C, H, W): one heat value per pixel, summed over channels
        info |= {"kind": "pixels", "shape": list(heat.shape), "values": _round(_pool(heat))}
    elif values.dim() == 2:  # log-mel (n_mels, T)
        info |= {"kind": "time_frequency", "shape": list(heat.shape)}
        info["values"] = _round(_pool(heat))
    else:  # a waveform (S,)
        info |= {"kind": "waveform", "shape": list(heat.shape), "values": _vector(values)}
    return info, (x[0].numpy(), heat)


def _explained_class(task: str, decoded: dict[str, Tensor], classes: list[Any], label: Any) -> int:
    if task == "regression":
        return 0
    if label is not None:
        names = [str(c) for c in classes]
        if str(label) not in names:
            raise ExplainError(f"label {label!r} is not a class of this output; classes: {names}")
        return names.index(str(label))
    if task == "multilabel":
        return int(decoded["proba"][0].argmax())
    return int(decoded["pred"][0])


def _attention(model: MultimodalModel, row: Row) -> dict[str, Any] | None:
    maps_fn = getattr(model.fusion, "attention_maps", None)
    if maps_fn is None:
        return None
    masks = {k: v.bool() for k, v in row.masks.items()}
    maps = maps_fn(row.embeddings, masks).mean(0)  # (L, H, T, T), mean over a row's windows
    per_layer = maps.mean(1)  # (L, T, T), averaged over heads
    names = list(model.fusion.names)  # type: ignore[union-attr,arg-type]
    return {
        "tokens": ["[CLS]", *names],
        "cls_to_modality": {n: float(per_layer[-1, 0, 1 + i]) for i, n in enumerate(names)},
        "layers": _round(per_layer.numpy()),
    }


def _subset(dataset: TableDataset, rows: list[int]) -> TableDataset:
    """The dataset of ``rows`` in that order (with all of their windows, if windowed)."""
    if dataset.row_of is None:
        items, row_of = rows, None
    else:
        first = [*W.first_windows(dataset.row_of, dataset.n_rows).tolist(), len(dataset)]
        spans = [range(first[r], first[r + 1]) for r in rows]
        items = [i for span in spans for i in span]
        row_of = torch.repeat_interleave(
            torch.arange(len(rows)), torch.tensor(list(map(len, spans)))
        )
    batch = dataset.__getitems__(items)
    inputs = {k: Transformed(v, batch["masks"][k]) for k, v in batch["features"].items()}
    return TableDataset(inputs, batch["targets"], row_of=row_of)


@dataclass
class _Table:
    """Where the explained rows come from: for reading a windowed series whole again."""

    pipeline: TablePipeline
    frame: pd.DataFrame
    base_dir: Path
    source: str


def explain_rows(
    model: MultimodalModel,
    pipeline: TablePipeline,
    inputs: list[InputConfig],
    dataset: TableDataset,
    frame: pd.DataFrame,
    rows: list[int],
    source: str = "<table>",
    output: str | None = None,
    method: str = "integrated_gradients",
    steps: int = 32,
    label: Any = None,
    base_dir: str | Path = ".",
) -> list[Explanation]:
    """Explanations of ``rows`` (positions in ``frame`` / the dataset's rows) for ``output``
    (default: the first), for the predicted class or ``label``. ``method``:
    integrated_gradients or gradient_x_input (attributions within each input), attention (the
    attention fusion's weights only) or occlusion (per-modality occlusion only; every row gets
    that). ``base_dir``: the folder the table's file cells are relative to (a windowed series is
    read whole again for its map)."""
    check_method(model, method)
    check_rows(rows, dataset.n_rows, source)
    output = output if output is not None else next(iter(model.heads))
    check_output(model, output)
    model.eval()
    sub = _subset(dataset, rows)
    emb, masks = encode_dataset(model, sub)
    task = task_of(model, output)
    row_of = sub.row_of if sub.row_of is not None else torch.arange(len(rows))
    with torch.no_grad():
        logits = W.aggregate_logits(task, model.fuse(emb, masks)[output], row_of, len(rows))
    decoded = model.heads[output].decode(logits)  # type: ignore[operator]
    enc = pipeline.targets[output]
    explained = [
        _explained_class(task, {k: v[j : j + 1] for k, v in decoded.items()}, enc.classes, label)
        for j in range(len(rows))
    ]
    classes = torch.tensor(explained) if task in ("binary", "multiclass") else None
    occlusion = row_importance(model, emb, masks, pipeline, output, classes, sub.row_of)
    by_name = {i.name: i for i in inputs}
    table = _Table(pipeline, frame, Path(base_dir), source)
    first = [*W.first_windows(row_of, len(rows)).tolist(), len(row_of)]
    out = []
    for j, r in enumerate(rows):
        span = slice(first[j], first[j + 1])  # the row's windows (one unless windowed)
        row = Row(model, {k: v[span] for k, v in emb.items()},
                  {k: m[span] for k, m in masks.items()}, output, task)  # fmt: skip
        summary = _header(frame, r, output, task, decoded, j, enc, explained[j], method)
        summary["occlusion"] = {n: float(occlusion[n][j]) for n in model.inputs}
        expl = Explanation(summary)
        summary["modalities"] = {}
        for name in model.inputs:
            x = sub.inputs[name].values[span]  # (k, ...): the same k times unless windowed
            info, display = _input_explanation(
                row, name, x, by_name[name], table, r, explained[j], method, steps
            )
            summary["modalities"][name] = info
            if display is not None:
                expl.display[name] = display
        summary["attention"] = _attention(model, row)
        out.append(expl)
    return out


def _input_explanation(
    row: Row,
    name: str,
    x: Tensor,
    inp: InputConfig,
    table: _Table,
    r: int,
    target: int,
    method: str,
    steps: int,
) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray] | None]:
    """One input of one row: attributions unless it is missing or the method has none."""
    info: dict[str, Any] = {"present": bool(row.masks[name].any())}
    if not info["present"] or method not in (*GRADIENT_METHODS, "occlusion"):
        return info, None
    pre = table.pipeline.preprocessors[name]
    encoder = row.model.encoders[row.model.tied.get(name, name)]
    gradients = method in GRADIENT_METHODS and getattr(encoder, "differentiable", True)
    if method in GRADIENT_METHODS and not gradients:  # e.g. MiniRocket's step-function features
        info["attribution"] = (
            f"none: {type(encoder).__name__}'s output has no gradient with respect to its "
            "input; the occlusion values say how much this input (and each channel) mattered"
        )
    if SE.is_series(pre):
        return _series_explanation(row, name, x, pre, table, r, target, method, steps, info)
    if getattr(pre, "parts", None):  # a clip's frames: each occluded in turn
        scores = lambda z: row.scores(name, z)  # noqa: E731
        info[f"{pre.parts}_occlusion"] = part_occlusion(encoder, x[:1], scores, row.task, target)  # type: ignore[attr-defined]
    if not gradients:
        return info, None
    attrs, delta = attribute_input(row, name, x[:1], target, method, steps)
    cells = table.frame.iloc[r][inp.cols]
    details, display = _describe(inp, table.pipeline, cells, attrs, x[:1])
    return info | details | {"convergence_delta": delta}, display


def _series_explanation(
    row: Row,
    name: str,
    x: Tensor,
    pre: Any,
    table: _Table,
    r: int,
    target: int,
    method: str,
    steps: int,
    info: dict[str, Any],
) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray] | None]:
    """A series: per-channel occlusion, and (with gradients) its time x channel map."""
    windowed = bool(getattr(pre, "windowed", False))
    classes = target if row.task in ("binary", "multiclass") else None
    occlusion = SE.channel_occlusion(row, name, x if windowed else x[:1], table.pipeline, classes)
    if "attribution" in info or method not in GRADIENT_METHODS:
        details, _ = SE.describe_series(pre, None, x[0], occlusion)
        return info | details, None
    whole = (
        SE.whole_series(table.pipeline, name, table.frame, r, table.base_dir, table.source)
        if windowed
        else x[0]
    )
    attrs, delta = SE.attribute_series(row, name, whole, pre, target, method, steps)
    details, display = SE.describe_series(pre, attrs, whole, occlusion)
    return info | details | {"convergence_delta": delta}, display


def _header(
    frame: pd.DataFrame,
    r: int,
    output: str,
    task: str,
    decoded: dict[str, Tensor],
    j: int,
    enc: Any,
    explained: int,
    method: str,
) -> dict[str, Any]:
    label = enc.decode(decoded["pred"][j : j + 1])[0]
    head: dict[str, Any] = {
        "row": r,
        "index": str(frame.index[r]),
        "output": output,
        "task": task,
        "method": method,
        "prediction": _plain(label),
    }
    if output in frame.columns:
        head["actual"] = _plain(frame[output].iloc[r])
    if "proba" in decoded:
        labels = [str(c) for c in enc.proba_labels()]
        head["probabilities"] = {
            c: float(p) for c, p in zip(labels, decoded["proba"][j], strict=True)
        }
        head["explained_class"] = labels[explained]
    return head


def write_explanations(explanations: list[Explanation], folder: str | Path) -> list[Path]:
    """``row_<R>.json`` and ``row_<R>.png`` per explained row, plus ``explanations.json`` with
    them all; returns the files written."""
    from polymodal.evaluation.plots import explanation as figure

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for e in explanations:
        stem = out / f"row_{e.summary['row']}"
        write_json(stem.with_suffix(".json"), e.summary)
        stem.with_suffix(".png").write_bytes(figure(e.summary, e.display))
        written += [stem.with_suffix(".json"), stem.with_suffix(".png")]
    write_json(out / "explanations.json", [e.summary for e in explanations])
    return [*written, out / "explanations.json"]
