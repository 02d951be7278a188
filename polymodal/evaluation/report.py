"""``report.html``: one self-contained page describing a trained model, for the people who have to
trust it. From the saved model alone: config, training-data summary, training curves, the
metrics recorded at training time, saved robustness results. With a labelled table (the test
split by default): metrics, confusion matrix, ROC / PR curves, calibration, robustness, modality
importance and explained examples computed on (a sample of) its rows."""

from __future__ import annotations

import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from polymodal.config import ExperimentConfig, to_dict
from polymodal.data.dataset import TableDataset
from polymodal.data.pipeline import TablePipeline
from polymodal.data.summary import table_summary
from polymodal.evaluation import html as H
from polymodal.evaluation import plots
from polymodal.evaluation import windows as W
from polymodal.evaluation.evaluate import score
from polymodal.evaluation.explain import ExplainError, Explanation, explain_rows
from polymodal.evaluation.importance import (
    encode_dataset,
    fuse_all,
    importance_table_rows,
    modality_importance,
    scored_outputs,
)
from polymodal.evaluation.robustness import MAIN_METRIC, robustness, robustness_plot
from polymodal.evaluation.series_explain import channel_importance
from polymodal.models import MultimodalModel
from polymodal.utils.io import atomic_write_text


@dataclass
class SavedModel:
    """What the report reads from a saved model."""

    name: str
    config: ExperimentConfig
    pipeline: TablePipeline
    model: MultimodalModel
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    data_summary: dict[str, Any] = field(default_factory=dict)  # of the training table
    robustness: dict[str, Any] | None = None  # saved by ``evaluate --robustness``


@dataclass
class Table:
    frame: pd.DataFrame
    base: Path
    source: str


@dataclass
class ReportOptions:
    max_rows: int = 2000  # rows of the table the computed sections use (a seeded sample)
    examples: int = 3  # explained rows
    repeats: int = 20  # modality importance: permutations / bootstrap resamples
    robustness_rows: int = 500  # when robustness is computed here (not saved): rows it uses
    method: str = "integrated_gradients"
    seed: int = 0


def _sample(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    if len(frame) <= n:
        return frame
    keep = np.sort(np.random.default_rng(seed).choice(len(frame), n, replace=False))
    return frame.iloc[keep]


def _monitors(saved: SavedModel) -> dict[str, str]:
    """Per output, the validation metric to plot: the trainer's monitor, else the main one."""
    out = {o: MAIN_METRIC[t] for o, t in scored_outputs(saved.model).items()}
    output, _, metric = (saved.config.trainer.monitor or "").partition(".")
    if output in out and metric:
        out[output] = metric
    return out


# -- sections from the saved model --------------------------------------------------------------
def shown_path(text: str) -> str:
    """A path as a report shows it: relative to the working directory when inside it, else
    only its file name (a report is shared; the machine's folders are nobody's business). Names
    like ``<predict DataFrame>`` and a `` (test split)`` suffix stay as they are."""
    match = SPLIT_SUFFIX.search(text)
    head, tail = (text[: match.start()], match.group(0)) if match else (text, "")
    if len(head) > 4096 or not os.path.isabs(head):
        return text
    path = Path(os.path.normpath(head))
    cwd = Path(os.path.realpath(Path.cwd()))
    for candidate in (path, Path(os.path.realpath(path))):
        if candidate.is_relative_to(cwd):
            return str(candidate.relative_to(cwd)) + tail
    return path.name + tail


SPLIT_SUFFIX = re.compile(r" \((train|val|test) split\)$")


def paths_shown(value: Any) -> Any:
    """``value`` (config dicts, lists) with every absolute path passed through
    :func:`shown_path` (data.train, data.roots, a local model_name...)."""
    if isinstance(value, dict):
        return {k: paths_shown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [paths_shown(v) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        return shown_path(value)
    return value


def _config_section(saved: SavedModel) -> str:
    cfg = saved.config
    inputs = [
        [i.name, i.type, ", ".join(i.cols), i.tied or "", _options(paths_shown(i.encoder))]
        for i in cfg.inputs
    ]
    outputs = [[o.name, o.task, o.loss, _options({"type": "", **o.head})] for o in cfg.outputs]
    tr = cfg.trainer
    trainer = [
        [k, getattr(tr, k)]
        for k in ("epochs", "batch_size", "lr", "schedule", "monitor", "modality_dropout", "seed")
        if hasattr(tr, k)
    ]
    n_params = sum(p.numel() for p in saved.model.parameters())
    full = yaml.safe_dump(paths_shown(to_dict(cfg)), sort_keys=False, allow_unicode=True)
    return (
        "<h2>Model</h2>"
        f"<p>Fusion: <b>{H.esc(_options(cfg.fusion))}</b>; {n_params:,} parameters.</p>"
        + H.table(["input", "type", "columns", "tied to", "encoder"], inputs)
        + H.table(["output", "task", "loss", "head"], outputs)
        + H.table(["trainer", "value"], trainer)
        + f"<details><summary>full config</summary><pre>{H.esc(full)}</pre></details>"
    )


def _options(block: dict[str, Any]) -> str:
    rest = ", ".join(f"{k}={v}" for k, v in block.items() if k != "type")
    return f"{block.get('type')}" + (f" ({rest})" if rest else "")


def _data_table(summary: dict[str, Any], title: str) -> str:
    rows = [
        [c["column"], c["role"], c["dtype"], c["missing_rate"], c.get("n_unique"), c["example"]]
        for c in summary.get("columns", [])
    ]
    parts = [f"<h3>{H.esc(title)}: {summary.get('n_rows', 0):,} rows</h3>"]
    parts.append(H.table(["column", "role", "type", "missing rate", "unique", "example"], rows))
    for output, dist in summary.get("targets", {}).items():
        if dist:
            parts.append(H.table([f"{output}", "value"], [[k, v] for k, v in dist.items()]))
    return "".join(parts)


def _data_section(saved: SavedModel, table: Table | None, sample: pd.DataFrame | None) -> str:
    parts = ["<h2>Data</h2>"]
    if saved.data_summary:
        parts.append(_data_table(saved.data_summary, "Training table"))
    if table is not None and sample is not None:
        cfg = saved.config
        summary = table_summary(sample, cfg.inputs, cfg.outputs)
        title = f"{table.source}" + (" (sample)" if len(sample) < len(table.frame) else "")
        parts.append(_data_table(summary, title))
    if len(parts) == 1:
        parts.append(H.note("No data summary: the model predates it and no table was given."))
    return "".join(parts)


def _training_section(saved: SavedModel) -> str:
    if not saved.history:
        return "<h2>Training</h2>" + H.note("No training history saved with this model.")
    monitors = _monitors(saved)
    curves = plots.training_curves(saved.history, monitors)
    rows = []
    for r in saved.history:
        val: dict[str, Any] = r["val"] if isinstance(r.get("val"), dict) else {}
        metrics = [val.get(o, {}).get(m) for o, m in monitors.items()]
        losses = [r["epoch"], r.get("train_loss"), val.get("loss")]
        rows.append([*losses, *metrics, r.get("lr"), r.get("seconds")])
    headers = ["epoch", "train loss", "val loss", *[f"val {o} {m}" for o, m in monitors.items()]]
    best = saved.metrics.get("best_epoch")
    return (
        "<h2>Training</h2>"
        + (f"<p>Best epoch: {best} (weights kept from it).</p>" if best else "")
        + (H.img(curves, "training curves", "plot-training-curves") if curves else "")
        + H.table([*headers, "lr", "seconds"], rows)
    )


def _metrics_section(saved: SavedModel, evaluated: dict[str, Any], source: str) -> str:
    columns = {
        k: saved.metrics[k] for k in ("val", "test") if isinstance(saved.metrics.get(k), dict)
    }
    if evaluated:
        columns[source] = {o: e["report"] for o, e in evaluated.items()}
    if not columns:
        return "<h2>Metrics</h2>" + H.note("No metrics saved and no table given.")
    parts = ["<h2>Metrics</h2>"]
    for output in scored_outputs(saved.model):
        names: list[str] = []
        for rep in columns.values():
            for k, v in rep.get(output, {}).items():
                if k not in names and not isinstance(v, list):
                    names.append(k)
        rows = [[m, *[rep.get(output, {}).get(m) for rep in columns.values()]] for m in names]
        parts += [f"<h3>{H.esc(output)}</h3>", H.table(["metric", *columns], rows)]
    return "".join(parts)


# -- sections computed on a table ---------------------------------------------------------------
def _figures(
    name: str,
    task: str,
    decoded: dict[str, Any],
    y: np.ndarray,
    report: dict[str, Any],
    pipeline: TablePipeline,
) -> list[tuple[str, bytes]]:
    """Confusion matrix, ROC / PR (binary), calibration; predicted vs true for regression."""
    labels = [str(c) for c in pipeline.targets[name].proba_labels()]
    if task == "regression":
        enc = pipeline.targets[name]
        pred = enc.inverse(decoded["pred"]).numpy().ravel()
        truth = enc.inverse(torch.as_tensor(y)).numpy().ravel()
        return [("predicted vs true", plots.scatter(truth, pred, name))]
    if task not in ("binary", "multiclass"):
        return []
    cm = plots.confusion(report["confusion_matrix"], labels, f"{name}: confusion matrix")
    proba = decoded["proba"].numpy()
    binary = task == "binary" and len(np.unique(y)) == 2
    if binary:
        conf, hit, what = proba[:, 1], y == 1, f"P({name} = {labels[1]})"
    else:
        conf, hit = proba.max(1), proba.argmax(1) == y
        what = "confidence of the predicted class"
    cal = plots.calibration(conf, hit.astype(float), f"{name}: {what}")
    figures = [("confusion matrix", cm), ("calibration", cal)]
    if binary:
        figures.append(("ROC and PR curves", plots.roc_pr(y.astype(int), proba[:, 1], labels[1])))
    return figures


def _evaluate(
    model: MultimodalModel, pipeline: TablePipeline, ds: TableDataset, logits: dict[str, Any]
) -> dict[str, Any]:
    """Per scored output: its metric report, its plots, predictions and targets (per row:
    windowed rows' windows averaged)."""
    out: dict[str, Any] = {}
    targets = ds.targets
    if ds.row_of is not None:
        logits = W.to_rows(model, logits, ds.row_of, ds.n_rows)
        targets = W.row_targets(targets, ds.row_of, ds.n_rows)
    for name, task in scored_outputs(model).items():
        decoded = model.heads[name].decode(logits[name])  # type: ignore[operator]
        target = targets[name]
        report = score(task, decoded, target, pipeline, name)
        y = target.numpy()
        figures = _figures(name, task, decoded, y, report, pipeline)
        out[name] = {"report": report, "figures": figures, "pred": decoded["pred"].numpy(), "y": y}
    return out


def _evaluation_section(evaluated: dict[str, Any], source: str, n: int) -> str:
    parts = [f"<h2>Evaluation on {H.esc(source)} ({n:,} rows)</h2>"]
    for output, e in evaluated.items():
        parts.append(f"<h3>{H.esc(output)}</h3>")
        images = [
            H.img(
                data, f"{output}: {title}", "plot-" + f"{output}-{title}".lower().replace(" ", "-")
            )
            for title, data in e["figures"]
        ]
        parts.append(H.row(images))
    return "".join(parts)


def _robustness_section(result: dict[str, Any] | None, origin: str) -> str:
    if result is None:
        return "<h2>Robustness</h2>" + H.note(
            "Not computed: run `polymodal evaluate MODEL_DIR TABLE --robustness`, or pass a table."
        )
    with tempfile.TemporaryDirectory() as tmp:
        data = robustness_plot(result, Path(tmp) / "robustness.png").read_bytes()
    outputs = list(result["metric"])
    rows = [
        [r["modality"], r["condition"], r["level"], *[r.get(o) for o in outputs]]
        for r in result["rows"]
    ]
    headers = ["modality", "condition", "level", *[f"{o} {result['metric'][o]}" for o in outputs]]
    return (
        f"<h2>Robustness</h2><p>{H.esc(origin)}. Each modality masked (as if missing) and under "
        "increasing noise (Gaussian x feature std; for ids, the fraction of replaced tokens).</p>"
        + H.img(data, "robustness to missing and noisy modalities", "plot-robustness")
        + H.details("robustness table", H.table(headers, rows))
    )


def _importance_section(result: dict[str, Any]) -> str:
    return (
        "<h2>Modality importance</h2>"
        f"<p>Drop of each output's main metric on {result['n_rows']:,} rows when a modality is "
        "masked (ablation) or shuffled across rows (permutation); error bars: 95% interval over "
        f"{result['repeats']} bootstrap resamples of the rows (and permutations).</p>"
        + H.img(plots.importance(result), "modality importance", "plot-modality-importance")
        + H.table(
            ["modality", "output", "method", "drop", "95% low", "95% high"],
            importance_table_rows(result),
        )
    )


def _channel_section(result: dict[str, Any]) -> str:
    rows = [
        [name, output, channel, drop]
        for name, entry in result["inputs"].items()
        for output, drops in entry["drop"].items()
        for channel, drop in zip(entry["channels"], drops, strict=True)
    ]
    return (
        "<h2>Channel importance</h2>"
        f"<p>Drop of each output's main metric on {result['n_rows']:,} rows when one channel of "
        "a time series is occluded (set to its training mean on every step).</p>"
        + H.img(plots.channel_importance(result), "channel importance", "plot-channel-importance")
        + H.details(
            "channel importance table", H.table(["input", "output", "channel", "drop"], rows)
        )
    )


def _examples_section(explanations: list[Explanation]) -> str:
    parts = [
        "<h2>Explained examples</h2><p>Per row: how much the explained class's probability "
        "falls when each modality is masked, and attributions within each input (red: towards "
        "the explained class, blue: against).</p>"
    ]
    for e in explanations:
        s = e.summary
        probs = s.get("probabilities") or {}
        top = sorted(probs.items(), key=lambda kv: -kv[1])[:3]
        text = ", ".join(f"{k}: {v:.3f}" for k, v in top)
        parts.append(
            f"<h3>Row {s['row']}: predicted {H.esc(s['prediction'])}, actual "
            f"{H.esc(s.get('actual'))}</h3><p>{H.esc(text)}</p>"
            + H.img(plots.explanation(s, e.display), f"row {s['row']}", f"plot-example-{s['row']}")
        )
    return "".join(parts)


def pick_examples(evaluated: dict[str, Any], n_rows: int, k: int) -> list[int]:
    """Up to ``k`` rows: misclassified ones first (up to half), then correct ones."""
    if k <= 0 or n_rows == 0:
        return []
    if not evaluated:  # no labels: the first rows
        return list(range(min(k, n_rows)))
    first = next(iter(evaluated.values()))
    if first["pred"].shape != first["y"].shape:
        return list(range(min(k, n_rows)))
    wrong = np.flatnonzero(first["pred"] != first["y"]).tolist()
    right = np.flatnonzero(first["pred"] == first["y"]).tolist()
    chosen = wrong[: (k + 1) // 2]
    chosen += right[: k - len(chosen)]
    chosen += [r for r in wrong if r not in chosen][: k - len(chosen)]
    return sorted(chosen)


@dataclass
class _Computed:
    """Sections computed on the table, and what the caller may want to print."""

    sample: pd.DataFrame | None = None
    evaluated: dict[str, Any] = field(default_factory=dict)
    importance: dict[str, Any] | None = None
    channels: dict[str, Any] | None = None  # per-channel importance of series inputs
    robustness: dict[str, Any] | None = None
    robustness_origin: str = ""
    explanations: list[Explanation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def _compute(saved: SavedModel, table: Table, opts: ReportOptions) -> _Computed:
    done = _Computed(sample=_sample(table.frame, opts.max_rows, opts.seed))
    sample, model, pipe = done.sample, saved.model, saved.pipeline
    assert sample is not None
    labelled = all(o in sample.columns for o in scored_outputs(model))
    t0 = time.perf_counter()
    ds = pipe.dataset(sample, table.base, table.source, with_targets=labelled)
    encoded = encode_dataset(model, ds)
    done.seconds["preprocess_encode"] = time.perf_counter() - t0
    if labelled and scored_outputs(model):
        evaluated = _evaluate(model, pipe, ds, fuse_all(model, *encoded))
        done.evaluated = {
            o.name: evaluated[o.name] for o in saved.config.outputs if o.name in evaluated
        }
        t0 = time.perf_counter()
        done.importance = modality_importance(model, ds, pipe, opts.repeats, opts.seed, encoded)
        channels = channel_importance(model, ds, pipe, encoded)
        done.channels = channels if channels["inputs"] else None
        done.seconds["importance"] = time.perf_counter() - t0
    else:
        done.notes.append(f"{table.source} has no target column(s): no metrics or importance.")
    if saved.robustness is not None:
        done.robustness, done.robustness_origin = saved.robustness, "Saved with the model"
    elif labelled and set(scored_outputs(model)) == set(model.heads):
        t0 = time.perf_counter()
        n = min(opts.robustness_rows, ds.n_rows)
        done.robustness = robustness(model, _head(ds, n), pipe)
        done.robustness_origin = f"Computed here on {n:,} rows of {table.source}"
        done.seconds["robustness"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    picks = pick_examples(done.evaluated, len(sample), opts.examples)
    if picks and scored_outputs(model):
        cfg = saved.config
        first = next(o.name for o in cfg.outputs if o.name in scored_outputs(model))
        args = (model, pipe, cfg.inputs, ds, sample, picks, table.source, first)
        try:
            done.explanations = explain_rows(*args, opts.method, base_dir=table.base)
        except ExplainError as err:  # e.g. an int8 model: no gradients, occlusion still works
            done.notes.append(f"Explained examples show occlusion only: {err}")
            done.explanations = explain_rows(*args, "occlusion", base_dir=table.base)
    done.seconds["explanations"] = time.perf_counter() - t0
    return done


def _head(ds: TableDataset, n: int) -> TableDataset:
    """The dataset of the first ``n`` rows (with their windows, if windowed)."""
    from polymodal.data.base import Transformed

    row_of = ds.row_of
    items = list(range(n)) if row_of is None else torch.nonzero(row_of < n).flatten().tolist()
    batch = ds.__getitems__(items)
    inputs = {k: Transformed(v, batch["masks"][k]) for k, v in batch["features"].items()}
    kept = None if row_of is None else row_of[: len(items)]
    return TableDataset(inputs, batch["targets"], row_of=kept)


def build_report(
    saved: SavedModel,
    path: str | Path,
    table: Table | None = None,
    options: ReportOptions | None = None,
) -> dict[str, Any]:
    """Write ``path`` (HTML, images inline). Returns what was computed: ``importance``,
    ``robustness``, ``metrics`` (on the table), ``n_rows`` and ``seconds`` per part."""
    opts = options or ReportOptions()
    t0 = time.perf_counter()
    if table is not None:  # the table as the page names it: no absolute machine path
        table = Table(table.frame, table.base, shown_path(table.source))
    done = _compute(saved, table, opts) if table is not None else _Computed()
    if table is None:
        done.notes.append(
            "No table given: pass one (--data) for evaluation plots, modality importance and "
            "explained examples."
        )
        if saved.robustness is not None:
            done.robustness, done.robustness_origin = saved.robustness, "Saved with the model"
    source = table.source if table is not None else ""
    n = len(done.sample) if done.sample is not None else 0
    sections = [H.note(x) for x in done.notes]
    sections += [_config_section(saved), _data_section(saved, table, done.sample)]
    sections += [_training_section(saved), _metrics_section(saved, done.evaluated, source)]
    if done.evaluated:
        sections.append(_evaluation_section(done.evaluated, source, n))
    sections.append(_robustness_section(done.robustness, done.robustness_origin))
    if done.importance is not None:
        sections.append(_importance_section(done.importance))
    if done.channels is not None:
        sections.append(_channel_section(done.channels))
    if done.explanations:
        sections.append(_examples_section(done.explanations))
    meta = f"polymodal report of {saved.name}" + (f"; table {source}" if source else "")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, H.page(f"Model report: {saved.name}", meta, sections))
    done.seconds["total"] = time.perf_counter() - t0
    return {
        "path": str(path),
        "n_rows": n,
        "metrics": {o: e["report"] for o, e in done.evaluated.items()},
        "importance": done.importance,
        "channel_importance": done.channels,
        "robustness": done.robustness,
        "seconds": done.seconds,
    }
