"""``polymodal compress``: a saved model in, a compressed model directory out (int8, pruning or
distillation), then both measured the same way. Distillation trains a student through
``Predictor.fit``, which is why this sits beside the API rather than in ``compression/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polymodal.api import Predictor
from polymodal.compression import compress as C
from polymodal.config import load_config
from polymodal.data.io import TableLike, read_any
from polymodal.data.split import resolve_tables
from polymodal.utils.io import write_json

COMPRESSION = ("int8", "prune", "distill")


def compress(
    model_dir: str | Path,
    out_dir: str | Path,
    method: str,
    test: TableLike,
    *,
    train: TableLike | None = None,
    val: TableLike | None = None,
    pruning: str = "magnitude",
    amount: float = 0.5,
    epochs: int = 0,
    lr: float | None = None,
    student: str | Path | dict[str, Any] | None = None,
    kd_temperature: float = 2.0,
    kd_alpha: float = 0.5,
    rows: int = 64,
    repeats: int = 200,
    base_dir: str | Path | None = None,
) -> dict[str, Any]:
    """``polymodal compress``: ``model_dir`` in, a compressed model directory ``out_dir`` out,
    then both measured on ``test`` (see :func:`polymodal.compression.compress.compare`).
    ``train`` / ``val`` (default: the model's own config tables and split) feed the fine-tune
    after pruning and the distillation; ``student`` is the smaller model's config."""
    if method not in COMPRESSION:
        raise ValueError(f"method must be one of {', '.join(COMPRESSION)}, got {method!r}")
    original = Predictor.load(model_dir)
    test_table = read_any(test, "test", base_dir)
    if method == "int8":
        details, variant = C.int8(model_dir, out_dir, test_table, rows), "int8"
    elif method == "prune":
        train_table, val_table = (None, None)
        if epochs > 0:
            train_table, val_table, _ = resolve_tables(
                original.config.data, original.config.outputs, train, val, None, base_dir
            )
        details = C.prune(model_dir, out_dir, pruning, amount, epochs, train_table, val_table, lr)
        variant = f"{pruning}{round(amount * 100)}" + (f"_ft{epochs}" if epochs else "")
    else:
        if student is None:
            raise ValueError("distillation needs a student config (a smaller model): --student")
        cfg = load_config(student)
        if cfg.data.train is None and train is None:  # the teacher's tables and split
            cfg = cfg.model_copy(update={"data": original.config.data})
        pred = Predictor(cfg).fit(train, val=val, base_dir=base_dir, teacher=original,
                                  kd_temperature=kd_temperature, kd_alpha=kd_alpha)  # fmt: skip
        pred.save(out_dir)
        details = {"temperature": kd_temperature, "alpha": kd_alpha,
                   "best_epoch": pred.metrics_.get("best_epoch")}  # fmt: skip
        variant = "distilled"
    result = C.compare(model_dir, out_dir, test_table, variant, rows, repeats)
    result["details"] = details
    write_json(Path(out_dir) / "compression.json", result)
    return result
