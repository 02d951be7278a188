"""ONNX export of a saved model, checked against PyTorch on real rows, and an ONNX Runtime model
that runs behind the same preprocessing as PyTorch inference.

The graph's inputs are the preprocessed tensors and their presence masks in one fixed, sorted
order (``<input>`` then ``<input>__mask``, see :func:`io_names`); its outputs are the heads'
logits, sorted by name. Masks are bool tensors used arithmetically inside the model, so a missing
modality never changes the graph (no Python branch on data).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from polymodal import registry
from polymodal.config import ExperimentConfig
from polymodal.data.dataset import TableDataset
from polymodal.data.io import Table
from polymodal.data.pipeline import TablePipeline
from polymodal.models import MultimodalModel
from polymodal.utils.errors import PolymodalError

MASK_SUFFIX = "__mask"
OPSET = 17
Tensors = dict[str, torch.Tensor]


class ParityError(PolymodalError, RuntimeError):
    """ONNX Runtime and PyTorch disagree beyond the tolerance."""


def io_names(model: MultimodalModel) -> tuple[list[str], list[str]]:
    """(graph input names, graph output names): features then masks, each sorted; heads sorted.
    Decision-level fusion exports only the combined logits."""
    inputs = [*model.inputs, *(n + MASK_SUFFIX for n in model.inputs)]
    return inputs, sorted(model.heads)


class _Positional(nn.Module):
    """The model with positional tensors in and a tuple out: what the ONNX exporter traces."""

    def __init__(self, model: MultimodalModel) -> None:
        super().__init__()
        self.model = model
        self.names = list(model.inputs)
        self.outputs = sorted(model.heads)

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = len(self.names)
        features = dict(zip(self.names, tensors[:n], strict=True))
        masks = dict(zip(self.names, tensors[n:], strict=True))
        out = self.model(features, masks)
        return tuple(out[k] for k in self.outputs)


def flatten(model: MultimodalModel, features: Tensors, masks: Tensors) -> list[torch.Tensor]:
    """Batch dicts -> the graph's positional inputs (masks as bool)."""
    return [features[n] for n in model.inputs] + [masks[n].bool() for n in model.inputs]


def dynamic_axes(model: MultimodalModel, sequence_inputs: set[str]) -> dict[str, dict[int, str]]:
    """Batch is dynamic everywhere; token sequences (text inputs) are dynamic in length too."""
    ins, outs = io_names(model)
    axes: dict[str, dict[int, str]] = {k: {0: "batch"} for k in [*ins, *outs]}
    for name in sequence_inputs:
        axes[name] = {0: "batch", 1: f"{name}_length"}
    return axes


def _dynamic_shapes(model: MultimodalModel, sequence_inputs: set[str]) -> tuple[Any, ...]:
    """The same axes for ``torch.export`` (one spec per positional tensor, under ``*tensors``)."""
    batch = torch.export.Dim("batch")
    specs: list[dict[int, Any]] = []
    for name in model.inputs:
        spec: dict[int, Any] = {0: batch}
        if name in sequence_inputs:
            spec[1] = torch.export.Dim(f"{name}_length")
        specs.append(spec)
    specs += [{0: batch} for _ in model.inputs]
    return (tuple(specs),)


EXPORTERS = ("trace", "dynamo")


def export_model(
    model: MultimodalModel,
    batch: tuple[Tensors, Tensors],
    path: str | Path,
    sequence_inputs: set[str],
    exporter: str = "trace",
) -> Path:
    """Write ``model`` as ONNX, traced on ``batch`` (the model is left in eval mode).
    ``trace`` (TorchScript tracing) takes well under a second; ``dynamo`` (``torch.export``)
    takes seconds to a minute but also handles ``nn.MultiheadAttention``, whose traced reshapes
    freeze the batch size."""
    path = Path(path)
    model.feature_caches = {}  # never export a cache lookup
    wrapper = _Positional(model).eval()
    ins, outs = io_names(model)
    args = tuple(flatten(model, *batch))
    if exporter == "trace":
        options: dict[str, Any] = {"dynamic_axes": dynamic_axes(model, sequence_inputs)}
    else:
        options = {"dynamic_shapes": _dynamic_shapes(model, sequence_inputs)}
    fastpath = torch.backends.mha.get_fastpath_enabled()
    # nn.TransformerEncoderLayer's fused inference kernel has no ONNX form: export the plain ops
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # exporters' deprecation and tracer notes
            torch.onnx.export(
                wrapper,
                args,
                str(path),
                input_names=ins,
                output_names=outs,
                opset_version=OPSET,
                dynamo=exporter == "dynamo",
                **options,
            )
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        model.eval()
    return path


class OnnxModel:
    """An ONNX Runtime session with the model's call signature: ``(features, masks) -> logits``.
    ``predict_logits`` and the Predictor use it in place of the PyTorch model."""

    training = False

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def eval(self) -> OnnxModel:
        return self

    def train(self, mode: bool = True) -> OnnxModel:
        return self

    def __call__(self, features: Tensors, masks: Tensors) -> Tensors:
        feed: dict[str, np.ndarray] = {}
        for name in self.input_names:
            if name.endswith(MASK_SUFFIX):
                feed[name] = masks[name[: -len(MASK_SUFFIX)]].bool().numpy()
            else:
                feed[name] = features[name].numpy()
        outs = self.session.run(self.output_names, feed)
        return {
            k: torch.from_numpy(np.asarray(v)) for k, v in zip(self.output_names, outs, strict=True)
        }


def _variants(
    batch: tuple[Tensors, Tensors], sequence_inputs: set[str]
) -> list[tuple[str, Tensors, Tensors]]:
    """Shapes and masks the exported graph was not traced on: the real rows as they are, the
    first row alone (batch 1), sequences (tokens, time steps) one shorter and cut to half their
    length (a change a patch-based encoder sees), and each modality in turn masked on every other
    row (the missing-modality path)."""
    features, masks = batch
    out = [("rows", features, masks)]
    first = ({k: v[:1] for k, v in features.items()}, {k: v[:1] for k, v in masks.items()})
    out.append(("batch1", *first))
    if any(features[n].shape[1] > 1 for n in sequence_inputs):
        shorter = {
            k: v[:, :-1] if k in sequence_inputs and v.shape[1] > 1 else v
            for k, v in features.items()
        }
        out.append(("shorter", shorter, masks))
    if any(features[n].shape[1] > 2 for n in sequence_inputs):
        half = {
            k: v[:, : max(1, v.shape[1] // 2)] if k in sequence_inputs else v
            for k, v in features.items()
        }
        out.append(("half", half, masks))
    for name in sorted(masks):
        keep = torch.arange(len(masks[name])) % 2 == 0
        out.append((f"masked:{name}", features, {**masks, name: masks[name].bool() & keep}))
    return out


def parity(
    model: MultimodalModel,
    runner: OnnxModel,
    batch: tuple[Tensors, Tensors],
    sequence_inputs: set[str] | None = None,
) -> dict[str, Any]:
    """Max |ONNX - PyTorch| over every output for each variant of ``batch``."""
    model.eval()
    diffs: dict[str, float] = {}
    for label, features, masks in _variants(batch, sequence_inputs or set()):
        with torch.no_grad():
            ref = model(features, masks)
        got = runner(features, masks)
        diffs[label] = max(float((got[k] - ref[k].float()).abs().max()) for k in got)
    rows = len(next(iter(batch[1].values())))
    return {"max_abs_diff": max(diffs.values()), "by_case": diffs, "rows": rows}


def batch_of(dataset: TableDataset, rows: int) -> tuple[Tensors, Tensors]:
    """The first ``rows`` rows of a dataset as (features, masks)."""
    got = dataset.__getitems__(list(range(min(rows, len(dataset)))))
    return got["features"], got["masks"]


def table_batch(pipeline: TablePipeline, table: Table, rows: int) -> tuple[Tensors, Tensors]:
    """The first ``rows`` rows of a raw table, preprocessed, as (features, masks): what the
    exporter traces and the parity check and latency runs feed."""
    frame, base, source = table
    inputs = pipeline.transform_inputs(frame.head(rows), base, source)
    return batch_of(TableDataset(inputs, {}), rows)


def text_inputs(config: ExperimentConfig) -> set[str]:
    """Inputs whose sequences (tokens, time steps: axis 1) get a dynamic length axis, as their
    preprocessor says (``Preprocessor.sequence``)."""
    return {
        i.name
        for i in config.inputs
        if getattr(registry.get("preprocessor", i.type), "sequence", False)
    }


def export_checked(
    model: MultimodalModel,
    batch: tuple[Tensors, Tensors],
    path: str | Path,
    sequence_inputs: set[str],
    atol: float = 1e-4,
) -> dict[str, Any]:
    """Export and compare ONNX Runtime with PyTorch on real rows, with the fast tracer first and
    ``torch.export`` when the tracer's graph fails or disagrees. When neither is within ``atol``
    the file is removed and :class:`ParityError` says what each exporter got."""
    path = Path(path)
    failures: dict[str, str] = {}
    for exporter in EXPORTERS:
        try:
            export_model(model, batch, path, sequence_inputs, exporter)
            report = parity(model, OnnxModel(path), batch, sequence_inputs)
        except Exception as err:  # an exporter or runtime that cannot handle this model
            failures[exporter] = f"{type(err).__name__}: {str(err).strip()[:300]}"
            continue
        if report["max_abs_diff"] <= atol:  # NaN never passes
            size = round(path.stat().st_size / 2**20, 3)
            return {"path": str(path), "exporter": exporter, "atol": atol, "opset": OPSET,
                    "size_mb": size, **report}  # fmt: skip
        worst = max(report["by_case"].items(), key=lambda kv: kv[1])
        failures[exporter] = (
            f"differs from PyTorch by {report['max_abs_diff']:.3g} (> atol {atol:g}) on "
            f"{report['rows']} rows; worst case {worst[0]!r}"
        )
    path.unlink(missing_ok=True)
    detail = "; ".join(f"{k}: {v}" for k, v in failures.items())
    raise ParityError(f"ONNX export of {path.name} failed the parity check: {detail}")
