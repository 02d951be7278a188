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
- ``attention``: for the ``attention`` fusion, the cross-modal attention weights of the row.

Each input is attributed through its own encoder alone, with the other modalities' embeddings
held fixed, so inputs that share an encoder (``tied``) are attributed separately.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from polymodal.config import InputConfig
from polymodal.data.dataset import TableDataset
from polymodal.data.pipeline import TablePipeline
from polymodal.evaluation.importance import (
    check_output,
    encode_dataset,
    row_importance,
    task_of,
)
from polymodal.models import MultimodalModel
from polymodal.utils.errors import PolymodalError
from polymodal.utils.io import write_json

METHODS = ("integrated_gradients", "gradient_x_input", "attention", "occlusion")
GRADIENT_METHODS = ("integrated_gradients", "gradient_x_input")
MAX_MAP_SIDE = 64  # heat-maps larger than this are average-pooled in the JSON (not in the plots)


class ExplainError(PolymodalError, ValueError):
    """An explanation that does not apply to this model, input or table; the message says why."""


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


def embedding_layers(encoder: nn.Module, name: str) -> list[nn.Embedding]:
    """The embedding table(s) an id encoder looks its input up in."""
    own = getattr(encoder, "embedding", None)
    if isinstance(own, nn.Embedding):
        return [own]
    tables = getattr(encoder, "tables", None)
    if isinstance(tables, nn.ModuleList) and all(isinstance(t, nn.Embedding) for t in tables):
        return list(tables)  # type: ignore[arg-type]
    hf = getattr(encoder, "model", None)
    getter = getattr(hf, "get_input_embeddings", None)
    layer = getter() if callable(getter) else None
    if isinstance(layer, nn.Embedding):
        return [layer]
    raise ExplainError(
        f"input {name!r}: attributions for token / category ids are taken at the encoder's "
        f"embedding layer, but {type(encoder).__name__} has none (expected an nn.Embedding as "
        "`embedding`, an nn.ModuleList of them as `tables`, or a Hugging Face model with "
        "get_input_embeddings()); use method 'occlusion' or modality importance instead"
    )


@contextlib.contextmanager
def gradients_through(encoder: nn.Module) -> Iterator[None]:
    """Frozen pretrained encoders run under ``no_grad``; let gradients reach their inputs."""
    frozen = getattr(encoder, "frozen", None)
    if frozen:
        encoder.frozen = False  # type: ignore[assignment]
    try:
        with torch.enable_grad():
            yield
    finally:
        if frozen:
            encoder.frozen = frozen  # type: ignore[assignment]


def class_scores(logits: Tensor, task: str) -> Tensor:
    """(n, C) scores whose column ``c`` is the logit of class / label ``c`` (binary: -z, z)."""
    if task == "binary":
        return torch.cat([-logits[:, :1], logits[:, :1]], dim=1)
    return logits.reshape(len(logits), -1)


@dataclass
class _Row:
    """One row's fixed context: every input's embedding and presence, the output explained."""

    model: MultimodalModel
    embeddings: dict[str, Tensor]  # (1, D) each
    masks: dict[str, Tensor]  # (1,) each
    output: str
    task: str

    def scores(self, name: str, z: Tensor) -> Tensor:
        """Class scores with input ``name``'s embedding replaced by ``z`` (n, D)."""
        n = z.shape[0]
        emb = {k: z if k == name else v.expand(n, *v.shape[1:]) for k, v in self.embeddings.items()}
        masks = {k: v.expand(n) for k, v in self.masks.items()}
        return class_scores(self.model.fuse(emb, masks)[self.output], self.task)


def _attribute(
    fn: Callable[..., Tensor],
    inputs: tuple[Tensor, ...],
    baselines: tuple[Tensor, ...],
    target: int,
    method: str,
    steps: int,
) -> tuple[tuple[Tensor, ...], float | None]:
    from captum.attr import InputXGradient, IntegratedGradients

    if method == "gradient_x_input":
        leaves = tuple(t.detach().clone().requires_grad_() for t in inputs)
        attrs = InputXGradient(fn).attribute(leaves, target=target)
        return tuple(a.detach() for a in attrs), None
    attrs, delta = IntegratedGradients(fn).attribute(
        inputs, baselines=baselines, target=target, n_steps=steps, return_convergence_delta=True
    )
    return tuple(a.detach() for a in attrs), float(delta.abs().max())


def _id_attributions(
    row: _Row, name: str, encoder: nn.Module, x: Tensor, target: int, method: str, steps: int
) -> tuple[list[Tensor], float | None]:
    """Attributions at the embedding layer(s): their outputs are replaced by the values captum
    varies, while the ids still set the padding mask and positions."""
    layers = embedding_layers(encoder, name)
    seen: dict[int, tuple[Tensor, Tensor]] = {}  # per layer: the ids it saw, its output

    def capture(module: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
        seen[id(module)] = (args[0], out.detach())

    handles = [layer.register_forward_hook(capture) for layer in layers]
    try:
        encoder(x)
    finally:
        for h in handles:
            h.remove()
    pad = int(getattr(encoder, "pad_id", 0))  # categorical: 0 = missing
    real = tuple(seen[id(layer)][1] for layer in layers)
    base = tuple(layer(torch.full_like(seen[id(layer)][0], pad)).detach() for layer in layers)

    def forward(*values: Tensor) -> Tensor:
        n = values[0].shape[0]
        hooks = [
            layer.register_forward_hook(lambda m, a, o, v=value: v)
            for layer, value in zip(layers, values, strict=True)
        ]
        try:
            return row.scores(name, encoder(x.expand(n, *x.shape[1:])))
        finally:
            for h in hooks:
                h.remove()

    attrs, delta = _attribute(forward, real, base, target, method, steps)
    return [a[0].sum(-1) for a in attrs], delta  # per token / per column


def attribute_input(
    row: _Row, name: str, x: Tensor, target: int, method: str, steps: int = 32
) -> tuple[list[Tensor], float | None]:
    """Attributions of input ``name`` (its batch-of-one tensor ``x``) to class ``target``:
    float inputs -> one tensor shaped like a row of ``x``; ids -> one tensor per embedding
    layer, one value per token / column. Also the integrated-gradients convergence delta."""
    model = row.model
    encoder = model.encoders[model.tied.get(name, name)]
    with gradients_through(encoder):
        if not x.is_floating_point():
            return _id_attributions(row, name, encoder, x, target, method, steps)

        def forward(values: Tensor) -> Tensor:
            return row.scores(name, encoder(values))

        attrs, delta = _attribute(forward, (x,), (torch.zeros_like(x),), target, method, steps)
    return [attrs[0][0].detach()], delta


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


def _attention(model: MultimodalModel, row: _Row) -> dict[str, Any] | None:
    maps_fn = getattr(model.fusion, "attention_maps", None)
    if maps_fn is None:
        return None
    maps = maps_fn(row.embeddings, {k: v.bool() for k, v in row.masks.items()})[0]  # (L, H, T, T)
    per_layer = maps.mean(1)  # (L, T, T), averaged over heads
    names = list(model.fusion.names)  # type: ignore[union-attr,arg-type]
    return {
        "tokens": ["[CLS]", *names],
        "cls_to_modality": {n: float(per_layer[-1, 0, 1 + i]) for i, n in enumerate(names)},
        "layers": _round(per_layer.numpy()),
    }


def _subset(dataset: TableDataset, rows: list[int]) -> TableDataset:
    idx = torch.tensor(rows, dtype=torch.long)
    batch = dataset.__getitems__(rows)
    from polymodal.data.base import Transformed

    inputs = {k: Transformed(v, batch["masks"][k]) for k, v in batch["features"].items()}
    return TableDataset(inputs, {k: t[idx] for k, t in dataset.targets.items()})


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
) -> list[Explanation]:
    """Explanations of ``rows`` (positions in ``frame`` / ``dataset``) for ``output`` (default:
    the first), for the predicted class or ``label``. ``method``: integrated_gradients or
    gradient_x_input (attributions within each input), attention (the attention fusion's
    weights only) or occlusion (per-modality occlusion only; every row gets that)."""
    check_method(model, method)
    check_rows(rows, len(dataset), source)
    heads = list(model.heads)
    output = output if output is not None else heads[0]
    check_output(model, output)
    model.eval()
    sub = _subset(dataset, rows)
    emb, masks = encode_dataset(model, sub)
    task = task_of(model, output)
    with torch.no_grad():
        logits = model.fuse(emb, masks)[output]
    decoded = model.heads[output].decode(logits)  # type: ignore[operator]
    enc = pipeline.targets[output]
    explained = [
        _explained_class(task, {k: v[j : j + 1] for k, v in decoded.items()}, enc.classes, label)
        for j in range(len(rows))
    ]
    classes = torch.tensor(explained) if task in ("binary", "multiclass") else None
    occlusion = row_importance(model, emb, masks, pipeline, output, classes)
    by_name = {i.name: i for i in inputs}
    out = []
    for j, r in enumerate(rows):
        row = _Row(
            model,
            {k: v[j : j + 1] for k, v in emb.items()},
            {k: m[j : j + 1] for k, m in masks.items()},
            output,
            task,
        )
        summary = _header(frame, r, output, task, decoded, j, enc, explained[j], method)
        summary["occlusion"] = {n: float(occlusion[n][j]) for n in model.inputs}
        expl = Explanation(summary)
        summary["modalities"] = {}
        for name in model.inputs:
            x = sub.inputs[name].values[j : j + 1]
            cells = frame.iloc[r][by_name[name].cols]
            info, display = _input_explanation(
                row, name, x, by_name[name], pipeline, cells, explained[j], method, steps
            )
            summary["modalities"][name] = info
            if display is not None:
                expl.display[name] = display
        summary["attention"] = _attention(model, row)
        out.append(expl)
    return out


def _input_explanation(
    row: _Row,
    name: str,
    x: Tensor,
    inp: InputConfig,
    pipeline: TablePipeline,
    cells: pd.Series,
    target: int,
    method: str,
    steps: int,
) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray] | None]:
    """One input of one row: attributions unless it is missing or the method has none."""
    info: dict[str, Any] = {"present": bool(row.masks[name][0])}
    if not info["present"] or method not in GRADIENT_METHODS:
        return info, None
    encoder = row.model.encoders[row.model.tied.get(name, name)]
    if not getattr(encoder, "differentiable", True):  # e.g. MiniRocket's step-function features
        info["attribution"] = (
            f"none: {type(encoder).__name__}'s output has no gradient with respect to its "
            "input; the occlusion value says how much this input mattered"
        )
        return info, None
    attrs, delta = attribute_input(row, name, x, target, method, steps)
    details, display = _describe(inp, pipeline, cells, attrs, x)
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
