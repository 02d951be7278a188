"""The Python API: ``Predictor(config).fit(train).predict(table)``, scikit-learn style.

Tables may be DataFrames or paths (CSV / Parquet / JSONL). Learned state ends in ``_``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, TypeAlias

import pandas as pd

from polymodal.compression import distill
from polymodal.config import ExperimentConfig, OutputConfig, load_config
from polymodal.data.dataset import TableDataset
from polymodal.data.io import read_table
from polymodal.data.pipeline import TablePipeline
from polymodal.data.split import split_frame
from polymodal.data.stream import StreamingTable, fit_streaming, open_streams, should_stream
from polymodal.data.summary import table_summary
from polymodal.evaluation.distributed import evaluate_all
from polymodal.evaluation.evaluate import evaluate
from polymodal.evaluation.explain import check_rows, explain_rows, write_explanations
from polymodal.evaluation.importance import modality_importance, write_importance
from polymodal.evaluation.predict import predict_frame
from polymodal.evaluation.report import ReportOptions, SavedModel, Table, build_report
from polymodal.evaluation.robustness import (
    NOISE_LEVELS,
    robustness,
    robustness_plot,
    robustness_table,
)
from polymodal.export.artifact import Artifact, load_artifact, save_artifact
from polymodal.models import build_model, preprocessing_options, validate
from polymodal.train.distributed import start_processes
from polymodal.train.loop import feature_caches, train
from polymodal.utils import dist
from polymodal.utils.io import atomic_write_text, read_json, write_json
from polymodal.utils.seed import seed_everything

log = logging.getLogger("polymodal")

TableLike: TypeAlias = pd.DataFrame | str | Path


def _read(
    data: TableLike, name: str, base_dir: str | Path | None = None
) -> tuple[pd.DataFrame, Path, str]:
    """A table, the folder its relative file paths are resolved against (the table's own folder,
    or ``base_dir`` / the working directory for DataFrames), and its name for errors."""
    if isinstance(data, pd.DataFrame):
        return data, Path(base_dir or Path.cwd()).resolve(), f"<{name} DataFrame>"
    path = Path(data)
    return read_table(path), path.resolve().parent, str(path)


ONNX_FILE = "model.onnx"


class Predictor:
    """Train, evaluate, save and load a multimodal model described by one config."""

    runner_: Any = None  # an ONNX Runtime model in place of the PyTorch one (``load(backend=)``)
    model_dir_: Path | None = None  # the saved model's folder (vector indexes live there)

    def __init__(self, config: str | Path | dict[str, Any] | ExperimentConfig) -> None:
        self.config = load_config(config)
        validate(self.config)  # unknown components / options fail before any data is read

    # -- training ---------------------------------------------------------------------------
    def fit(
        self,
        train_data: TableLike | None = None,
        val: TableLike | None = None,
        test: TableLike | None = None,
        output_dir: str | Path | None = None,
        resume: bool = False,
        base_dir: str | Path | None = None,
        teacher: Predictor | str | Path | None = None,
        kd_temperature: float = 2.0,
        kd_alpha: float = 0.5,
    ) -> Predictor:
        """Fit preprocessing on ``train_data`` and train; ``base_dir`` resolves relative file paths
        in DataFrames (tables read from files use their own folder). With a ``teacher`` (a saved
        model or its directory) this model is a student trained by knowledge distillation:
        ``(1 - kd_alpha) * hard loss + kd_alpha * T^2 * soft loss`` toward the teacher's logits."""
        cfg, trainer = self.config, self.config.trainer
        seed_everything(cfg.trainer.seed)
        start_processes(cfg.trainer)  # under torchrun / accelerate launch: join the other ranks
        options = {inp.name: preprocessing_options(inp) for inp in cfg.inputs}
        pipeline = TablePipeline(cfg.inputs, cfg.outputs, options, cfg.data.bad_cells)
        t0 = time.perf_counter()
        train_ds: Any
        if should_stream(cfg.data, cfg.data.train if train_data is None else train_data):
            if teacher is not None:
                raise ValueError(
                    "distillation reads the table in memory: set data.streaming: false"
                )
            train_ds, val_ds, test_part = self._streams(pipeline, train_data, val, test, base_dir)
            train_df = train_ds.head(10_000)  # a sample, for the table summary
            if trainer.feature_cache_memory_mb is None:  # every row's features would not fit
                trainer = trainer.model_copy(update={"feature_cache_memory_mb": 256.0})
        else:
            frames = self._frames(train_data, val, test, base_dir)
            (train_df, base, src), val_part, test_part = frames
            pipeline.fit(train_df, base, source=src)
            train_ds = pipeline.dataset(train_df, base, source=src)
            val_ds = pipeline.dataset(*val_part) if val_part else None
        rows = train_ds.rows if isinstance(train_ds, StreamingTable) else len(train_ds)
        log.info(
            "preprocessing fitted on %d training rows in %.1fs", rows, time.perf_counter() - t0
        )
        weights = {o.name: self._class_weights(o, pipeline) for o in cfg.outputs}
        specs, num_outputs = pipeline.specs(), pipeline.num_outputs()
        build = {"specs": specs, "num_outputs": num_outputs, "class_weights": weights}
        model = build_model(cfg, specs, num_outputs, weights)
        if teacher is not None:
            teacher = teacher if isinstance(teacher, Predictor) else Predictor.load(teacher)
            teacher_art = teacher._check_fitted()
            distill.check_compatible(teacher_art, {o.name: o.task for o in cfg.outputs})
            soft = distill.teacher_targets(teacher_art, train_df, base, src)
            train_ds = TableDataset(train_ds.inputs, {**train_ds.targets, **soft})
            model = distill.Distilled(model, kd_temperature, kd_alpha)
        run_dir = Path(output_dir) if output_dir else Path(tempfile.mkdtemp(prefix="polymodal-"))
        loss_weights = {o.name: o.weight for o in cfg.outputs}
        with feature_caches(model, pipeline, trainer):  # frozen encoders: once per input
            state = train(model, pipeline, train_ds, val_ds, trainer, run_dir, loss_weights, resume)
            model.eval()
            metrics: dict[str, Any] = {
                "best_epoch": state.best_epoch,
                "train_seconds": sum(r["seconds"] for r in state.history),
            }
            if val_ds is not None:  # every row once, shared out among the processes
                metrics["val"] = evaluate_all(model, val_ds, pipeline, loss_weights=loss_weights)
            if test_part:
                test_ds: TableDataset | StreamingTable = (
                    test_part
                    if isinstance(test_part, StreamingTable)
                    else pipeline.dataset(*test_part)
                )
                metrics["test"] = evaluate_all(model, test_ds, pipeline, loss_weights=loss_weights)
        summary = table_summary(train_df, cfg.inputs, cfg.outputs)  # for reports
        self.artifact_ = Artifact(cfg, pipeline, model, build, metrics, state.history, summary)
        if output_dir and dist.is_main_process():  # one artifact, written by rank 0 only
            save_artifact(run_dir, self.artifact_)
            self.model_dir_ = run_dir
        if dist.is_main_process():  # finished: nothing to resume
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        if not output_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
        dist.barrier()  # every rank returns once the artifact is complete
        return self

    def _streams(
        self,
        pipeline: TablePipeline,
        train_data: TableLike | None,
        val: TableLike | None,
        test: TableLike | None,
        base_dir: str | Path | None,
    ) -> tuple[StreamingTable, Any, Any]:
        """Streamed train / val / test (DataFrames for val / test stay in memory); the
        preprocessing is fitted in one pass over the training stream, shared by all ranks."""
        d = self.config.data
        train_data = d.train if train_data is None else train_data
        if not isinstance(train_data, (str, Path)):
            raise ValueError("data.streaming reads the training table from disk: pass its path")
        val, test = (d.val if val is None else val), (d.test if test is None else test)
        train_s, val_s, test_s = open_streams(d, pipeline, train_data, val, test)
        fit_streaming(pipeline, train_s, d.fit_rows)
        val_ds = (
            val_s
            if val_s is not None or val is None
            else pipeline.dataset(*_read(val, "val", base_dir))
        )
        test_ds = test_s if test_s is not None or test is None else _read(test, "test", base_dir)
        return train_s, val_ds, test_ds

    def _frames(
        self,
        train_data: TableLike | None,
        val: TableLike | None,
        test: TableLike | None,
        base_dir: str | Path | None,
    ) -> tuple[tuple[pd.DataFrame, Path, str], tuple[Any, ...] | None, tuple[Any, ...] | None]:
        d = self.config.data
        train_data = train_data if train_data is not None else d.train
        val = val if val is not None else d.val
        test = test if test is not None else d.test
        if train_data is None:
            raise ValueError("no training table: pass one to fit() or set data.train in the config")
        frame, base, src = _read(train_data, "train", base_dir)
        if val is not None:
            test_part = _read(test, "test", base_dir) if test is not None else None
            return (frame, base, src), _read(val, "val", base_dir), test_part
        first = self.config.outputs[0]
        strat = first.name if first.task in ("binary", "multiclass") else None
        tr, va, te = split_frame(frame, d, strat, src)
        test_part = (
            _read(test, "test", base_dir)
            if test is not None
            else ((te, base, f"{src} (test split)") if len(te) else None)
        )
        return (tr, base, src), (va, base, f"{src} (val split)"), test_part

    @staticmethod
    def _class_weights(out: OutputConfig, pipeline: TablePipeline) -> list[float] | None:
        cw = out.class_weights
        if cw is None or out.task == "regression":
            return None
        enc = pipeline.targets[out.name]
        if cw == "balanced":
            return enc.balanced_weights()  # from the class counts seen in fitting
        if isinstance(cw, dict):
            labels = [str(c) for c in enc.classes]
            unknown = set(cw) - set(labels)
            if unknown:
                raise ValueError(
                    f"outputs.{out.name}.class_weights: unknown labels {sorted(unknown)}; labels are {labels}"
                )
            weights = [float(cw.get(lbl, 1.0)) for lbl in labels]
            return weights[1:] if out.task == "binary" else weights
        return [float(w) for w in cw]

    # -- inference --------------------------------------------------------------------------
    def _check_fitted(self) -> Artifact:
        if not hasattr(self, "artifact_"):
            raise RuntimeError("this Predictor is not fitted: call fit() or Predictor.load(path)")
        return self.artifact_

    def predict(self, data: TableLike, base_dir: str | Path | None = None) -> pd.DataFrame:
        """One column per output with predicted labels/values, plus probabilities for classifiers
        (``<output>_proba_<label>``) and ``missing_modalities``, indexed like the input table."""
        art = self._check_fitted()
        frame, base, src = _read(data, "predict", base_dir)
        return predict_frame(art.model, art.pipeline, frame, base, src, self.runner_)

    def predict_proba(self, data: TableLike, base_dir: str | Path | None = None) -> pd.DataFrame:
        """Probability columns only (classification outputs)."""
        pred = self.predict(data, base_dir)
        return pred[[c for c in pred.columns if "_proba_" in c]]

    def evaluate(self, data: TableLike, base_dir: str | Path | None = None) -> dict[str, Any]:
        art = self._check_fitted()
        frame, base, src = _read(data, "evaluate", base_dir)
        ds = art.pipeline.dataset(frame, base, source=src)
        weights = {o.name: o.weight for o in art.config.outputs}
        return evaluate(art.model, ds, art.pipeline, loss_weights=weights, runner=self.runner_)

    def robustness(
        self,
        data: TableLike,
        output_dir: str | Path | None = None,
        noise_levels: tuple[float, ...] = NOISE_LEVELS,
        base_dir: str | Path | None = None,
    ) -> dict[str, Any]:
        """Metric with each modality masked and under increasing noise; with ``output_dir``,
        also writes ``robustness.json``, ``robustness.md`` and ``robustness.png`` there."""
        art = self._check_fitted()
        frame, base, src = _read(data, "evaluate", base_dir)
        ds = art.pipeline.dataset(frame, base, source=src)
        result = robustness(art.model, ds, art.pipeline, noise_levels)
        if output_dir is not None:
            out = Path(output_dir)
            out.mkdir(parents=True, exist_ok=True)
            write_json(out / "robustness.json", result)
            atomic_write_text(out / "robustness.md", robustness_table(result) + "\n")
            robustness_plot(result, out / "robustness.png")
        return result

    # -- explanations -----------------------------------------------------------------------
    def importance(
        self,
        data: TableLike,
        repeats: int = 20,
        output_dir: str | Path | None = None,
        base_dir: str | Path | None = None,
    ) -> dict[str, Any]:
        """Per modality, the drop of each output's main metric when it is masked (ablation) or
        shuffled across rows (permutation), with 95% bootstrap intervals; with ``output_dir``,
        also writes ``importance.json``, ``importance.md`` and ``importance.png`` there."""
        art = self._check_fitted()
        frame, base, src = _read(data, "importance", base_dir)
        ds = art.pipeline.dataset(frame, base, source=src)
        result = modality_importance(art.model, ds, art.pipeline, repeats)
        if output_dir is not None:
            write_importance(result, output_dir)
        return result

    def explain(
        self,
        data: TableLike,
        rows: list[int],
        output: str | None = None,
        method: str = "integrated_gradients",
        label: Any = None,
        output_dir: str | Path | None = None,
        base_dir: str | Path | None = None,
    ) -> list[dict[str, Any]]:
        """Why the model predicted what it did for ``rows`` (positions in ``data``): per-modality
        occlusion, attributions within each input (integrated_gradients or gradient_x_input),
        attention weights for the attention fusion. With ``output_dir``: ``row_<R>.json`` and
        ``row_<R>.png`` per row there. Explains the predicted class, or ``label``, of ``output``
        (default: the config's first output)."""
        art = self._check_fitted()
        frame, base, src = _read(data, "explain", base_dir)
        check_rows(list(rows), len(frame), src)  # before preprocessing anything
        part = frame.iloc[list(rows)]
        ds = art.pipeline.dataset(part, base, source=src, with_targets=False)
        output = output if output is not None else art.config.outputs[0].name
        found = explain_rows(
            art.model, art.pipeline, art.config.inputs, ds, part, list(range(len(part))), src,
            output, method, label=label,
        )  # fmt: skip
        for e, r in zip(found, rows, strict=True):
            e.summary["row"] = int(r)  # position in ``data``, not in the explained slice
        if output_dir is not None:
            write_explanations(found, output_dir)
        return [e.summary for e in found]

    def report(
        self,
        path: str | Path,
        data: TableLike | None = None,
        options: ReportOptions | None = None,
        base_dir: str | Path | None = None,
    ) -> Path:
        """Write a self-contained HTML report to ``path``; ``data`` (default: the config's test,
        else validation, table or split) feeds the evaluation, importance and examples.
        What was computed is kept in ``report_``."""
        art = self._check_fitted()
        folder = self.model_dir_
        saved_robustness = folder / "robustness.json" if folder else None
        saved = SavedModel(
            folder.name if folder else "model", art.config, art.pipeline, art.model,
            art.metrics, art.history, art.summary,
            read_json(saved_robustness) if saved_robustness and saved_robustness.exists() else None,
        )  # fmt: skip
        table = self._report_table(data, base_dir)
        with feature_caches(art.model, art.pipeline, art.config.trainer):
            self.report_ = build_report(saved, path, Table(*table) if table else None, options)
        return Path(path)

    def _report_table(
        self, data: TableLike | None, base_dir: str | Path | None
    ) -> tuple[pd.DataFrame, Path, str] | None:
        if data is not None:
            return _read(data, "report", base_dir)
        d = self.config.data
        for path in (d.test, d.val):
            if path and Path(path).exists():
                return _read(path, "report")
        if d.train and Path(d.train).exists():
            _, val_part, test_part = self._frames(None, None, None, base_dir)
            return test_part or val_part  # type: ignore[return-value]
        return None

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        return save_artifact(path, self._check_fitted())

    @classmethod
    def load(cls, path: str | Path, backend: str = "torch") -> Predictor:
        """``backend="onnx"``: logits come from ``model.onnx`` in ``path`` (see ``export_onnx``)
        through ONNX Runtime; preprocessing and decoding stay the same code path."""
        art = load_artifact(path)
        pred = cls.__new__(cls)
        pred.config = art.config
        pred.artifact_ = art
        pred.runner_ = None
        pred.model_dir_ = Path(path)  # where `index` stores and `search` finds vector indexes
        if backend == "onnx":
            onnx_path = Path(path) / ONNX_FILE
            if not onnx_path.exists():
                raise FileNotFoundError(
                    f"{onnx_path} not found: run `polymodal export {path} --format onnx` first"
                )
            from polymodal.export.onnx import OnnxModel

            pred.runner_ = OnnxModel(onnx_path)
        elif backend != "torch":
            raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
        return pred

    def export_onnx(
        self,
        data: TableLike,
        path: str | Path,
        rows: int = 64,
        atol: float = 1e-4,
        base_dir: str | Path | None = None,
    ) -> dict[str, Any]:
        """Write the model as ONNX to ``path`` and check it against PyTorch on up to ``rows``
        real rows of ``data`` (as they are, batch 1, and with each modality masked);
        raises ``ParityError`` beyond ``atol``. Returns the parity report."""
        from polymodal.export.onnx import batch_of, export_checked

        art = self._check_fitted()
        frame, base, src = _read(data, "export", base_dir)
        inputs = art.pipeline.transform_inputs(frame.head(rows), base, src)
        text = {i.name for i in art.config.inputs if i.type == "text"}
        batch = batch_of(TableDataset(inputs, {}), rows)
        return export_checked(art.model, batch, path, text, atol)

    @property
    def metrics_(self) -> dict[str, Any]:
        return self._check_fitted().metrics

    # -- retrieval --------------------------------------------------------------------------
    def index(
        self,
        data: TableLike,
        column: str,
        model_dir: str | Path | None = None,
        kind: str = "auto",
        id_column: str | None = None,
        output: str | None = None,
        base_dir: str | Path | None = None,
    ) -> dict[str, Any]:
        """Embed ``column`` of ``data`` with the retrieval head and store a FAISS index of it in
        ``model_dir/index/`` (default: the folder the model was loaded from); ``kind`` auto picks
        exact search below 50,000 rows, IVF above. Returns the index's description."""
        from polymodal.export import index as ix

        art = self._check_fitted()
        frame, base, src = _read(data, "index", base_dir)
        si = ix.build_index(art, frame, column, base, src, output, kind, id_column)
        where = model_dir or self.model_dir_
        if where is None:
            raise ValueError("no model directory to store the index in: pass model_dir")
        path = ix.save_index(where, si)
        described = {k: v for k, v in si.meta.items() if k not in ("ids", "values")}
        return {**described, "path": str(path)}

    def search(
        self,
        text: str | list[str] | None = None,
        image: str | Path | bytes | list[Any] | None = None,
        k: int = 10,
        column: str | None = None,
        model_dir: str | Path | None = None,
    ) -> pd.DataFrame:
        """Top-``k`` rows of a stored index for text or image queries (the other side of the
        retrieval pair): columns ``query, rank, id, score, <indexed column>``."""
        from polymodal.export import index as ix

        if (text is None) == (image is None):
            raise ValueError("search needs exactly one of text= or image=")
        art = self._check_fitted()
        where = model_dir or self.model_dir_
        if where is None:
            raise ValueError("no model directory holding an index: pass model_dir")
        si = ix.load_index(where, column)
        raw = text if text is not None else image
        queries = list(raw) if isinstance(raw, list) else [raw]
        if image is not None:
            queries = [q if isinstance(q, bytes) else str(q) for q in queries]
        return ix.search(art, si, queries, "text" if text is not None else "image", k)


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
    from polymodal.compression import compress as C

    if method not in COMPRESSION:
        raise ValueError(f"method must be one of {', '.join(COMPRESSION)}, got {method!r}")
    original = Predictor.load(model_dir)
    test_table = _read(test, "test", base_dir)
    if method == "int8":
        details, variant = C.int8(model_dir, out_dir, test_table, rows), "int8"
    elif method == "prune":
        train_table, val_table = (None, None)
        if epochs > 0:
            train_table, val_table, _ = original._frames(train, val, None, base_dir)
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
