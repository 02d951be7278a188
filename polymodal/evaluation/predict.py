"""Table in, table out: the one prediction path shared by ``Predictor`` and the HTTP server
(preprocess with the fitted pipeline, logits from PyTorch or ONNX Runtime, decode with the heads).
Nothing here is rebuilt per call beyond the batch itself. No row leaves with a NaN probability:
non-finite model outputs are an error naming the rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from polymodal.data.base import DataError
from polymodal.data.dataset import TableDataset
from polymodal.data.pipeline import TablePipeline
from polymodal.evaluation import windows as W
from polymodal.evaluation.evaluate import predict_logits
from polymodal.models import MultimodalModel


def predict_frame(
    model: MultimodalModel,
    pipeline: TablePipeline,
    frame: pd.DataFrame,
    base_dir: Path,
    source: str,
    runner: Any = None,
) -> pd.DataFrame:
    """One column per output with predicted labels/values, ``<output>_proba_<label>`` for
    classifiers and ``missing_modalities``, indexed like ``frame``. ``runner`` (e.g. an ONNX
    Runtime model) computes the logits in place of ``model``. A windowed input's windows are
    predicted one by one and averaged per row (see :mod:`polymodal.evaluation.windows`)."""
    inputs = pipeline.transform_inputs(frame, base_dir, source)
    if len(frame) == 0:  # an empty table: an empty result with the usual columns
        return _empty(model, pipeline, frame)
    data = TableDataset(inputs, {})
    logits = predict_logits(runner or model, data)
    present = {k: t.present for k, t in sorted(data.inputs.items())}
    if data.row_of is not None:  # windows: one answer per row (aggregated in Python)
        logits = W.to_rows(model, logits, data.row_of, len(frame))
        present = W.row_masks(present, data.row_of, len(frame))
    check_finite(model, logits, frame.index, source)
    cols: dict[str, Any] = {}  # one DataFrame at the end: inserting columns costs ~1 ms each
    for name, head in model.heads.items():
        dec = head.decode(logits[name])  # type: ignore[operator]
        enc = pipeline.targets[name]
        cols[name] = enc.decode(dec["pred"])
        if "proba" in dec:
            for j, label in enumerate(enc.proba_labels()):
                cols[f"{name}_proba_{label}"] = dec["proba"][:, j].numpy()
    cols["missing_modalities"] = [
        ",".join(n for n, p in present.items() if not bool(p[i])) for i in range(len(frame))
    ]
    return pd.DataFrame(cols, index=frame.index)


PROBA_TASKS = ("binary", "multiclass", "multilabel")  # heads that decode to probabilities
SCORED_TASKS = (*PROBA_TASKS, "regression")


def check_finite(
    model: MultimodalModel, logits: dict[str, torch.Tensor], rows: pd.Index, source: str
) -> None:
    """A :class:`DataError` naming the rows whose classification / regression outputs are NaN
    or infinite (an input out of range, or a broken model), instead of a silent NaN answer."""
    for name, head in model.heads.items():
        if getattr(head, "task", None) not in SCORED_TASKS:
            continue
        out = logits[name]
        bad = ~torch.isfinite(out.reshape(out.shape[0], -1)).all(1)
        if bool(bad.any()):
            where = [rows[int(i)] for i in torch.nonzero(bad).flatten()[:5]]
            raise DataError(
                f"{source}, row(s) {where}{' ...' if int(bad.sum()) > 5 else ''}: the output "
                f"{name!r} is not finite (NaN or infinity); expected finite input values: check "
                "these rows' numeric and file cells"
            )


def _empty(model: MultimodalModel, pipeline: TablePipeline, frame: pd.DataFrame) -> pd.DataFrame:
    """The columns a prediction of ``frame`` would have, with no rows."""
    cols: dict[str, Any] = {}
    for name, head in model.heads.items():
        cols[name] = pd.Series([], dtype=object)
        if getattr(head, "task", None) in PROBA_TASKS:
            for label in pipeline.targets[name].proba_labels():
                cols[f"{name}_proba_{label}"] = np.zeros(0, dtype=np.float32)
    cols["missing_modalities"] = pd.Series([], dtype=object)
    return pd.DataFrame(cols, index=frame.index)
