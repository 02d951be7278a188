"""The Python API: ``Predictor(config).fit(train).predict(table)``, scikit-learn style.

Tables may be DataFrames or paths (CSV / Parquet / JSONL). Learned state ends in ``_``.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from polymodal.compression import distill
from polymodal.config import ExperimentConfig, TrainerConfig, apply_overrides, load_config
from polymodal.data.checks import config_findings
from polymodal.data.dataset import TableDataset
from polymodal.data.io import TableLike, read_any
from polymodal.data.pipeline import TablePipeline
from polymodal.data.presets import starter
from polymodal.data.split import resolve_tables
from polymodal.data.stream import StreamingTable
from polymodal.data.summary import table_summary
from polymodal.data.targets import class_weights
from polymodal.evaluation.distributed import evaluate_all
from polymodal.evaluation.evaluate import evaluate
from polymodal.evaluation.explain import check_rows, explain_rows, write_explanations
from polymodal.evaluation.importance import modality_importance, write_importance
from polymodal.evaluation.predict import predict_frame
from polymodal.evaluation.report import ReportOptions, SavedModel, build_report
from polymodal.evaluation.report import Table as ReportTable
from polymodal.evaluation.robustness import (
    NOISE_LEVELS,
    robustness,
    robustness_plot,
    robustness_table,
)
from polymodal.export.artifact import Artifact, load_artifact, save_artifact
from polymodal.models import MultimodalModel, build_model, preprocessing_options, validate
from polymodal.train.distributed import start_processes
from polymodal.train.fit_data import FitData, fit_data
from polymodal.train.loop import feature_caches, train
from polymodal.utils import dist
from polymodal.utils.io import atomic_write_text, read_json, write_json
from polymodal.utils.seed import seed_everything

log = logging.getLogger("polymodal")


def _final_metrics(
    model: MultimodalModel, pipeline: TablePipeline, data: FitData, state: Any,
    loss_weights: dict[str, float],
) -> dict[str, Any]:  # fmt: skip
    """Best epoch, training time, and the validation / test reports (every row once, shared out
    among the processes)."""
    metrics: dict[str, Any] = {
        "best_epoch": state.best_epoch,
        "train_seconds": sum(r["seconds"] for r in state.history),
    }
    if data.val is not None:
        metrics["val"] = evaluate_all(model, data.val, pipeline, loss_weights=loss_weights)
    if data.test:
        test = data.test if isinstance(data.test, StreamingTable) else pipeline.dataset(*data.test)
        metrics["test"] = evaluate_all(model, test, pipeline, loss_weights=loss_weights)
    return metrics


def _default_monitor(cfg: ExperimentConfig, has_val: bool) -> TrainerConfig:
    """The trainer settings, monitoring ROC-AUC when the first output is binary and nothing
    else was asked for (validation loss rewards calibration, not ranking)."""
    first, trainer = cfg.outputs[0], cfg.trainer
    if trainer.monitor is None and has_val and first.task == "binary":
        return trainer.model_copy(update={"monitor": f"{first.name}.roc_auc"})
    return trainer


ONNX_FILE = "model.onnx"


class Predictor:
    """Train, evaluate, save and load a multimodal model described by one config."""

    runner_: Any = None  # an ONNX Runtime model in place of the PyTorch one (``load(backend=)``)
    model_dir_: Path | None = None  # the saved model's folder (vector indexes live there)

    def __init__(self, config: str | Path | dict[str, Any] | ExperimentConfig) -> None:
        self.config = load_config(config)
        self.findings_: list[Any] = []  # what ``fit_table`` found about the columns (leaks, ids)
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
        cfg = self.config
        seed_everything(cfg.trainer.seed)
        start_processes(cfg.trainer)  # under torchrun / accelerate launch: join the other ranks
        options = {inp.name: preprocessing_options(inp) for inp in cfg.inputs}
        pipeline = TablePipeline(
            cfg.inputs, cfg.outputs, options, cfg.data.bad_cells, cfg.data.allow_outside,
            cfg.data.roots,
        )  # fmt: skip
        data = fit_data(cfg, pipeline, train_data, val, test, base_dir)
        if dist.is_main_process():
            for f in config_findings(data.sample, cfg.inputs, cfg.outputs):
                log.warning("warning: column %r: %s", f.column, f.message)
        weights = {o.name: class_weights(o, pipeline.targets[o.name]) for o in cfg.outputs}
        specs, num_outputs = pipeline.specs(), pipeline.num_outputs()
        build = {"specs": specs, "num_outputs": num_outputs, "class_weights": weights}
        model = build_model(cfg, specs, num_outputs, weights)
        if teacher is not None:
            model = self._student(model, data, teacher, kd_temperature, kd_alpha)
        trainer = _default_monitor(cfg, data.val is not None)
        if data.streamed and trainer.feature_cache_memory_mb is None:  # rows would not all fit
            trainer = trainer.model_copy(update={"feature_cache_memory_mb": 256.0})
        run_dir = Path(output_dir) if output_dir else Path(tempfile.mkdtemp(prefix="polymodal-"))
        loss_weights = {o.name: o.weight for o in cfg.outputs}
        with feature_caches(model, pipeline, trainer):  # frozen encoders: once per input
            state = train(
                model, pipeline, data.train, data.val, trainer, run_dir, loss_weights, resume
            )
            model.eval()
            metrics = _final_metrics(model, pipeline, data, state, loss_weights)
        summary = table_summary(data.sample, cfg.inputs, cfg.outputs)  # for reports
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

    @classmethod
    def fit_table(
        cls,
        data: TableLike,
        target: str | list[str],
        preset: str | None = "medium",
        output_dir: str | Path | None = None,
        val: TableLike | None = None,
        test: TableLike | None = None,
        time_limit: float | None = None,
        drop: tuple[str, ...] | list[str] = (),
        keep: tuple[str, ...] | list[str] = (),
        overrides: list[str] | None = None,
        base_dir: str | Path | None = None,
    ) -> Predictor:
        """``polymodal init`` + ``train`` in one call, as AutoGluon's ``fit(df, label=...)``:
        infer the columns (leaving out leaks, identifiers, constant and mostly missing ones, as
        ``findings_`` says), fill the ``preset`` (fast | medium | best), apply ``overrides``
        (``"trainer.epochs=3"``...) and train; without ``val`` the table is split (and, without
        ``test``, a test part is held out and scored). ``time_limit`` (seconds) stops training
        and keeps the best epoch so far. The config it wrote is ``config``."""
        frame, base, _ = read_any(data, "train", base_dir)
        found = starter(frame, target, base, preset, drop, keep)
        for f in found.findings:
            log.warning("%s %r: %s", "left out" if f.drop else "note:", f.column, f.message)
        cfg = found.config
        tables = {"train": data, "val": val, "test": test}
        cfg["data"] = {
            k: str(Path(v).resolve()) for k, v in tables.items() if isinstance(v, (str, Path))
        }
        if time_limit is not None:
            cfg["trainer"]["time_limit"] = float(time_limit)
        cfg = apply_overrides(cfg, list(overrides or []))
        pred = cls(cfg)
        pred.findings_ = found.findings
        return pred.fit(frame, val, test, output_dir=output_dir, base_dir=base)

    def _student(
        self, model: MultimodalModel, data: FitData, teacher: Predictor | str | Path,
        temperature: float, alpha: float,
    ) -> MultimodalModel:  # fmt: skip
        """``model`` as a student of ``teacher``: the teacher's logits on every training row join
        the targets, and the loss adds the distillation term."""
        if data.table is None:
            raise ValueError("distillation reads the table in memory: set data.streaming: false")
        teacher = teacher if isinstance(teacher, Predictor) else Predictor.load(teacher)
        teacher_art = teacher._check_fitted()
        distill.check_compatible(teacher_art, {o.name: o.task for o in self.config.outputs})
        soft = distill.teacher_targets(teacher_art, *data.table)
        data.train = TableDataset(data.train.inputs, {**data.train.targets, **soft})  # type: ignore[union-attr]
        return distill.Distilled(model, temperature, alpha)

    # -- inference --------------------------------------------------------------------------
    def _check_fitted(self) -> Artifact:
        if not hasattr(self, "artifact_"):
            raise RuntimeError("this Predictor is not fitted: call fit() or Predictor.load(path)")
        return self.artifact_

    def predict(self, data: TableLike, base_dir: str | Path | None = None) -> pd.DataFrame:
        """One column per output with predicted labels/values, plus probabilities for classifiers
        (``<output>_proba_<label>``) and ``missing_modalities``, indexed like the input table."""
        art = self._check_fitted()
        frame, base, src = read_any(data, "predict", base_dir)
        with self._cached(art):
            return predict_frame(art.model, art.pipeline, frame, base, src, self.runner_)

    def predict_proba(self, data: TableLike, base_dir: str | Path | None = None) -> pd.DataFrame:
        """Probability columns only (classification outputs)."""
        pred = self.predict(data, base_dir)
        return pred[[c for c in pred.columns if "_proba_" in c]]

    def evaluate(self, data: TableLike, base_dir: str | Path | None = None) -> dict[str, Any]:
        art = self._check_fitted()
        frame, base, src = read_any(data, "evaluate", base_dir)
        ds = art.pipeline.dataset(frame, base, source=src)
        weights = {o.name: o.weight for o in art.config.outputs}
        with self._cached(art):
            return evaluate(art.model, ds, art.pipeline, loss_weights=weights, runner=self.runner_)

    def _cached(self, art: Artifact) -> Any:
        """Frozen encoders' features cached as in training (same keys, same folder), so a
        second predict/evaluate over the same rows skips the transformer; not for ONNX."""
        if self.runner_ is not None:
            return contextlib.nullcontext()
        return feature_caches(art.model, art.pipeline, art.config.trainer)

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
        frame, base, src = read_any(data, "evaluate", base_dir)
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
        frame, base, src = read_any(data, "importance", base_dir)
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
        frame, base, src = read_any(data, "explain", base_dir)
        check_rows(list(rows), len(frame), src)  # before preprocessing anything
        part = frame.iloc[list(rows)]
        ds = art.pipeline.dataset(part, base, source=src, with_targets=False)
        output = output if output is not None else art.config.outputs[0].name
        found = explain_rows(
            art.model, art.pipeline, art.config.inputs, ds, part, list(range(len(part))), src,
            output, method, label=label, base_dir=base,
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
            self.report_ = build_report(
                saved, path, ReportTable(*table) if table else None, options
            )
        return Path(path)

    def _report_table(
        self, data: TableLike | None, base_dir: str | Path | None
    ) -> tuple[pd.DataFrame, Path, str] | None:
        if data is not None:
            return read_any(data, "report", base_dir)
        d = self.config.data
        for path in (d.test, d.val):
            if path and Path(path).exists():
                return read_any(path, "report")
        if d.train and Path(d.train).exists():
            _, val_part, test_part = resolve_tables(
                self.config.data, self.config.outputs, base_dir=base_dir
            )
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
        pred.runner_, pred.findings_ = None, []
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
        raises ``ParityError`` beyond ``atol``. Returns the parity report. Each retrieval
        tower is written and checked as its own graph too (``model.<output>.<input>.onnx``)."""
        from polymodal.export.onnx import batch_of, export_checked, text_inputs
        from polymodal.export.towers import export_towers

        art = self._check_fitted()
        frame, base, src = read_any(data, "export", base_dir)
        inputs = art.pipeline.transform_inputs(frame.head(rows), base, src)
        batch = batch_of(TableDataset(inputs, {}), rows)  # sequences (tokens, steps): dynamic
        report = export_checked(art.model, batch, path, text_inputs(art.config), atol)
        towers = export_towers(art.model, batch, path, text_inputs(art.config), atol)
        return {**report, "towers": towers} if towers else report

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
        exact search below 50,000 rows, IVF above. Returns the index's description. A frozen
        encoder runs in batches, and only on rows its feature cache has not seen (as training)."""
        from polymodal.export.index import index_table

        art, where = self._check_fitted(), model_dir or self.model_dir_
        return index_table(art, data, column, where, kind, id_column, output, base_dir)

    def search(
        self,
        text: str | list[str] | None = None,
        image: str | Path | bytes | list[Any] | None = None,
        k: int = 10,
        column: str | None = None,
        model_dir: str | Path | None = None,
    ) -> pd.DataFrame:
        """Top-``k`` rows of a stored index for text or image queries (the other side of the
        retrieval pair): columns ``query, rank, id, score, <indexed column>``. On the ONNX
        backend the queries go through the retrieval tower ``export_onnx`` wrote."""
        from polymodal.export.index import search_saved

        art, where = self._check_fitted(), model_dir or self.model_dir_
        onnx = self.model_dir_ / ONNX_FILE if self.runner_ is not None and self.model_dir_ else None
        return search_saved(art, where, text, image, k, column, onnx)
