"""``model dir in -> model dir out`` compression, and a report of what it cost and gained.

Each method writes a full model directory (loadable by ``Predictor.load``, servable, exportable);
:func:`compare` then measures the original and the compressed model the same way, in PyTorch and
in ONNX Runtime, on a labelled table (the test split).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from polymodal.compression import prune as P
from polymodal.compression.measure import count_params, profile, size_mb
from polymodal.compression.quantize import INT8, quantize_onnx
from polymodal.config import TrainerConfig
from polymodal.data.io import Table
from polymodal.evaluation.evaluate import evaluate
from polymodal.export.artifact import Artifact, load_artifact, save_artifact
from polymodal.export.onnx import OnnxModel, export_checked, table_batch, text_inputs
from polymodal.train.loop import train
from polymodal.utils.io import read_json, write_json

log = logging.getLogger("polymodal.compress")

# the metric reported for the first output, by task
METRIC = {"binary": "roc_auc", "multiclass": "accuracy", "multilabel": "micro_f1",
          "regression": "rmse"}  # fmt: skip
COPIED = ("config.yaml", "preprocessing.json", "model.safetensors", "metrics.json", "history.json")
ONNX = "model.onnx"


def int8(
    model_dir: str | Path, out_dir: str | Path, table: Table, rows: int = 64
) -> dict[str, Any]:
    """Dynamic int8: ``out_dir``'s PyTorch model is quantised when loaded (from the fp32
    safetensors: nothing pickled) and its ``model.onnx`` is ONNX Runtime's int8 graph of the
    parity-checked fp32 export."""
    src, dst = Path(model_dir), Path(out_dir)
    dst.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
    write_json(dst / "model.json", {**read_json(src / "model.json"), "quantization": INT8})
    art = load_artifact(src)
    with tempfile.TemporaryDirectory(prefix="polymodal-int8-") as tmp:
        fp32 = Path(tmp) / "model.fp32.onnx"
        parity = export_checked(
            art.model, table_batch(art.pipeline, table, rows), fp32, text_inputs(art.config)
        )
        quantize_onnx(fp32, dst / ONNX)
    return {"method": INT8, "onnx_parity_fp32": parity["max_abs_diff"]}


def prune(
    model_dir: str | Path,
    out_dir: str | Path,
    method: str = "magnitude",
    amount: float = 0.5,
    epochs: int = 0,
    train_table: Table | None = None,
    val_table: Table | None = None,
    lr: float | None = None,
) -> dict[str, Any]:
    """Prune (``magnitude`` or ``structured``), optionally fine-tune for ``epochs`` through the
    normal training loop (pruned weights stay zero / removed), then save with the pruning made
    permanent in the weights."""
    if method not in P.METHODS:
        raise ValueError(f"pruning method must be one of {', '.join(P.METHODS)}, got {method!r}")
    art = load_artifact(model_dir)
    art.model.train()
    if method == "magnitude":
        detail: Any = {"zeroed": P.magnitude(art.model, amount)}
    else:
        detail = {"layers": P.structured(art.model, amount)}
    if epochs > 0:
        if train_table is None:
            raise ValueError("fine-tuning after pruning needs a training table")
        art.history = art.history + _finetune(art, train_table, val_table, epochs, lr, out_dir)
    P.make_permanent(art.model)
    art.model.eval()
    info = {"method": method, "amount": amount, "finetune_epochs": epochs, **detail,
            "sparsity": round(P.sparsity(art.model), 4)}  # fmt: skip
    art.build = {**art.build, "pruning": info}
    save_artifact(out_dir, art)
    return info


def _finetune(
    art: Artifact, train_table: Table, val_table: Table | None, epochs: int, lr: float | None,
    out_dir: str | Path,
) -> list[dict[str, Any]]:  # fmt: skip
    cfg: TrainerConfig = art.config.trainer.model_copy(
        update={"epochs": epochs, "lr": lr or art.config.trainer.lr / 10, "warmup_ratio": 0.0,
                "early_stopping_patience": None}
    )  # fmt: skip
    train_ds = art.pipeline.dataset(*train_table)
    val_ds = art.pipeline.dataset(*val_table) if val_table else None
    weights = {o.name: o.weight for o in art.config.outputs}
    with tempfile.TemporaryDirectory(prefix="polymodal-finetune-") as run_dir:
        state = train(art.model, art.pipeline, train_ds, val_ds, cfg, Path(run_dir), weights)
    return [{**row, "phase": "prune_finetune"} for row in state.history]


def compare(
    original_dir: str | Path,
    compressed_dir: str | Path,
    table: Table,
    variant: str,
    rows: int = 64,
    repeats: int = 200,
) -> dict[str, Any]:
    """Size, parameters (non-zero), batch-1 latency p50/p99, batch-64 rows/s and the metric (with
    its delta from the original PyTorch model) of both models in both runtimes. The compressed
    directory gets its ``model.onnx`` (parity-checked) when it has none yet."""
    src, dst = Path(original_dir), Path(compressed_dir)
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="polymodal-compare-") as tmp:
        for label, folder, onnx_path in (
            ("original", src, Path(tmp) / ONNX),
            (variant, dst, dst / ONNX),
        ):
            art = load_artifact(folder)
            if not onnx_path.exists():
                log.info("%s: exporting to ONNX and checking parity", label)
                export_checked(
                    art.model,
                    table_batch(art.pipeline, table, rows),
                    onnx_path,
                    text_inputs(art.config),
                )
            out += _measure(art, folder, onnx_path, label, table, rows, repeats)
    base = out[0]["metric"]
    for row in out:
        row["metric_delta"] = None if base is None else round(row["metric"] - base, 5)
    result = {"variant": variant, "rows": out}
    write_json(dst / "compression.json", result)
    return result


def _measure(
    art: Artifact, folder: Path, onnx_path: Path, label: str, table: Table, rows: int,
    repeats: int,
) -> list[dict[str, Any]]:  # fmt: skip
    output = art.config.outputs[0]
    metric = METRIC[output.task]
    data = art.pipeline.dataset(*table)
    batch = table_batch(art.pipeline, table, rows)
    frame, base, source = table
    singles = [
        table_batch(art.pipeline, (frame.iloc[[i]], base, source), 1)
        for i in range(min(rows, len(frame)))
    ]
    params, nonzero = count_params(art.model)
    weights = folder / "model.safetensors"
    out = []
    for runtime, runner, files in (
        ("torch", art.model, [weights]),
        ("onnx", OnnxModel(onnx_path), [onnx_path]),
    ):
        log.info(
            "%s (%s): latency over %d calls, metric on %d rows", label, runtime, repeats, len(data)
        )
        report = evaluate(art.model, data, art.pipeline, runner=runner)
        out.append({"variant": f"{label}_{runtime}", "size_mb": size_mb(*files),
                    "params": params, "nonzero_params": nonzero, **profile(runner, batch, singles, repeats),
                    "metric": report[output.name][metric], "metric_name": metric})  # fmt: skip
    return out


def markdown(result: dict[str, Any]) -> str:
    cols = ["variant", "size_mb", "params", "nonzero_params", "p50_ms", "p99_ms",
            "batch64_rows_per_s", "metric_name", "metric", "metric_delta"]  # fmt: skip
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c)) for c in cols) + " |" for r in result["rows"]]
    return "\n".join(lines)
