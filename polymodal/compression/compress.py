"""``model dir in -> model dir out`` compression with a report of what it cost and gained."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from polymodal.compression.measure import count_params, profile, size_mb
from polymodal.compression.quantize import INT8, quantize_onnx
from polymodal.data.dataset import TableDataset
from polymodal.evaluation.evaluate import evaluate
from polymodal.export.artifact import load_artifact
from polymodal.export.onnx import OnnxModel, batch_of, export_checked
from polymodal.utils.io import read_json, write_json

# the metric reported per task (first output), and whether a drop is a loss
METRIC = {
    "binary": "roc_auc",
    "multiclass": "accuracy",
    "multilabel": "micro_f1",
    "regression": "rmse",
}
COPIED = ("config.yaml", "preprocessing.json", "model.safetensors", "metrics.json", "history.json")


def _copy_artifact(src: Path, dst: Path, **build_extra: Any) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
    write_json(dst / "model.json", {**read_json(src / "model.json"), **build_extra})


def int8(
    model_dir: str | Path,
    out_dir: str | Path,
    frame: pd.DataFrame,
    base_dir: Path,
    source: str,
    rows: int = 64,
    repeats: int = 200,
) -> dict[str, Any]:
    """Dynamic int8 in both runtimes. ``out_dir`` is a full model directory whose PyTorch model
    is quantised at load and whose ``model.onnx`` is the int8 graph. ``frame`` is a labelled
    table (the test split): the metric and its delta from fp32 are measured on it, latency on
    its first ``rows`` rows."""
    src, dst = Path(model_dir), Path(out_dir)
    original = load_artifact(src)
    _copy_artifact(src, dst, quantization=INT8)
    quantised = load_artifact(dst)
    data = original.pipeline.dataset(frame, base_dir, source=source)
    batch = batch_of(TableDataset(data.inputs, {}), rows)
    text = {i.name for i in original.config.inputs if i.type == "text"}
    fp32_onnx = dst / "model.fp32.onnx"
    parity = export_checked(original.model, batch, fp32_onnx, text)
    quantize_onnx(fp32_onnx, dst / "model.onnx")
    output = original.config.outputs[0]
    metric = METRIC[output.task]
    table = []
    for variant, art, runtime, runner, files in (
        ("fp32", original, "torch", original.model, [src / "model.safetensors"]),
        ("fp32", original, "onnx", OnnxModel(fp32_onnx), [fp32_onnx]),
        ("int8", quantised, "torch", quantised.model, [dst / "model.safetensors"]),
        ("int8", quantised, "onnx", OnnxModel(dst / "model.onnx"), [dst / "model.onnx"]),
    ):
        report = evaluate(art.model, data, art.pipeline, runner=runner)
        params, nonzero = count_params(art.model)
        table.append(
            {
                "variant": f"{variant}_{runtime}",
                "size_mb": size_mb(*files),
                "params": params,
                "nonzero_params": nonzero,
                **profile(runner, batch, repeats),
                "metric": report[output.name][metric],
                "metric_name": metric,
            }
        )
    base = table[0]["metric"]
    for row in table:
        row["metric_delta"] = None if base is None else round(row["metric"] - base, 5)
    fp32_onnx.unlink()  # the int8 graph is the one kept
    result = {"method": INT8, "onnx_parity_fp32": parity["max_abs_diff"], "rows": table}
    write_json(dst / "compression.json", result)
    return result


def markdown(result: dict[str, Any]) -> str:
    cols = ["variant", "size_mb", "params", "nonzero_params", "p50_ms", "p99_ms",
            "batch64_rows_per_s", "metric_name", "metric", "metric_delta"]  # fmt: skip
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c)) for c in cols) + " |" for r in result["rows"]]
    return "\n".join(lines)
