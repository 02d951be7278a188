"""Table in, table out: the one prediction path shared by ``Predictor`` and the HTTP server
(preprocess with the fitted pipeline, logits from PyTorch or ONNX Runtime, decode with the heads).
Nothing here is rebuilt per call beyond the batch itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from polymodal.data.dataset import TableDataset
from polymodal.data.pipeline import TablePipeline
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
    Runtime model) computes the logits in place of ``model``."""
    inputs = pipeline.transform_inputs(frame, base_dir, source)
    logits = predict_logits(runner or model, TableDataset(inputs, {}))
    cols: dict[str, Any] = {}  # one DataFrame at the end: inserting columns costs ~1 ms each
    for name, head in model.heads.items():
        dec = head.decode(logits[name])  # type: ignore[operator]
        enc = pipeline.targets[name]
        cols[name] = enc.decode(dec["pred"])
        if "proba" in dec:
            for j, label in enumerate(enc.proba_labels()):
                cols[f"{name}_proba_{label}"] = dec["proba"][:, j].numpy()
    present = {k: t.present for k, t in sorted(inputs.items())}
    cols["missing_modalities"] = [
        ",".join(n for n, p in present.items() if not bool(p[i])) for i in range(len(frame))
    ]
    return pd.DataFrame(cols, index=frame.index)
