"""Modality importance of a trained model: how much its metric drops when one modality is taken
away (ablation: masked, exactly as if the cells were missing) or broken (permutation: its values
shuffled across rows, so it no longer matches the rest of the row), with bootstrap confidence
intervals; and per-prediction importance (how much each row's predicted-class probability falls
when one of its modalities is masked).

Encoders run once: every masked or permuted variant only reruns fusion and heads on the cached
per-modality embeddings (``MultimodalModel.fuse``), which gives the same outputs as running the
whole model on the perturbed inputs, because encoders see one modality and one row at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import Tensor
from torch.utils.data import DataLoader

from polymodal.data.dataset import TableDataset, collate_batch
from polymodal.data.pipeline import TablePipeline
from polymodal.evaluation import windows as W
from polymodal.evaluation.metrics import HIGHER_IS_BETTER
from polymodal.evaluation.robustness import MAIN_METRIC
from polymodal.models import MultimodalModel
from polymodal.utils.errors import PolymodalError
from polymodal.utils.io import atomic_write_text, write_json

Tensors = dict[str, Tensor]


class ImportanceError(PolymodalError, ValueError):
    """The table or the model cannot give the importance asked for; the message says why."""


def task_of(model: MultimodalModel, output: str) -> str:
    return str(model.heads[output].task)


def scored_outputs(model: MultimodalModel) -> dict[str, str]:
    """``{output: task}`` for the outputs with a main metric (classification and regression)."""
    tasks = {name: task_of(model, name) for name in model.heads}
    return {n: t for n, t in tasks.items() if t in MAIN_METRIC}


@torch.no_grad()
def encode_dataset(
    model: MultimodalModel, dataset: TableDataset, batch_size: int = 256
) -> tuple[Tensors, Tensors]:
    """Every row's per-modality embeddings ``{input: (N, D)}`` and presence masks ``{input: (N,)}``."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_batch)
    chunks: dict[str, list[Tensor]] = {}
    for batch in loader:
        for k, v in model.encode(batch["features"]).items():
            chunks.setdefault(k, []).append(v.float())
    embeddings = {k: torch.cat(v) for k, v in chunks.items()}
    masks = {k: t.present.bool().clone() for k, t in dataset.inputs.items()}
    return embeddings, masks


@torch.no_grad()
def fuse_all(
    model: MultimodalModel, embeddings: Tensors, masks: Tensors, batch_size: int = 2048
) -> Tensors:
    """Fusion + heads over cached embeddings, in row order: ``{output: logits}``."""
    n = len(next(iter(masks.values())))
    parts: dict[str, list[Tensor]] = {}
    for start in range(0, n, batch_size):
        sl = slice(start, start + batch_size)
        out = model.fuse(
            {k: v[sl] for k, v in embeddings.items()}, {k: m[sl] for k, m in masks.items()}
        )
        for k, v in out.items():
            parts.setdefault(k, []).append(v.float())
    return {k: torch.cat(v) for k, v in parts.items()}


def main_metric(
    model: MultimodalModel,
    output: str,
    logits: Tensor,
    target: Tensor,
    pipeline: TablePipeline,
) -> float | None:
    """The output's main metric (``MAIN_METRIC``: ROC-AUC, accuracy, micro-F1 or RMSE), the same
    value :func:`~polymodal.evaluation.evaluate.score` reports, computed alone because importance
    scores hundreds of variants."""
    head = model.heads[output]
    decoded = head.decode(logits)  # type: ignore[operator]
    y = target.cpu().numpy()
    if head.task == "binary":
        if len(np.unique(y)) < 2:
            return None
        return float(roc_auc_score(y.astype(int), decoded["proba"][:, 1].numpy()))
    if head.task == "multiclass":
        return float((decoded["proba"].argmax(1).numpy() == y).mean())
    if head.task == "multilabel":
        pred, truth = decoded["pred"].numpy().astype(bool), y.astype(bool)
        tp = float((pred & truth).sum())
        denom = float(pred.sum() + truth.sum())
        return 2 * tp / denom if denom else 0.0
    enc = pipeline.targets[output]
    err = enc.inverse(decoded["pred"]).numpy() - enc.inverse(target).numpy()
    return float(np.sqrt(np.mean(err**2)))


def _interval(drops: list[float]) -> tuple[float | None, float | None]:
    if not drops:
        return None, None
    lo, hi = np.percentile(drops, [2.5, 97.5])
    return float(lo), float(hi)


def _drop(base: float | None, value: float | None, higher: bool) -> float | None:
    """Positive when the perturbation hurts: the metric fell (or an error metric rose)."""
    if base is None or value is None:
        return None
    return (base - value) if higher else (value - base)


class _Scorer:
    """Main metric of every output on (a bootstrap sample of) the rows, from logits (per
    window for windowed inputs: averaged per row first)."""

    def __init__(self, model: MultimodalModel, dataset: TableDataset, pipeline: TablePipeline):
        self.model, self.pipeline, self.targets = model, pipeline, dataset.targets
        self.row_of, self.n_rows = dataset.row_of, dataset.n_rows
        if self.row_of is not None:
            self.targets = W.row_targets(self.targets, self.row_of, self.n_rows)
        self.outputs = scored_outputs(model)
        missing = [o for o in self.outputs if o not in dataset.targets]
        if missing:
            raise ImportanceError(
                f"modality importance needs the target column(s) {missing} in the table"
            )

    def __call__(self, logits: Tensors, rows: Tensor | None = None) -> dict[str, float | None]:
        if self.row_of is not None:
            logits = W.to_rows(self.model, logits, self.row_of, self.n_rows)
        out = {}
        for name in self.outputs:
            lg, tg = logits[name], self.targets[name]
            if rows is not None:
                lg, tg = lg[rows], tg[rows]
            out[name] = main_metric(self.model, name, lg, tg, self.pipeline)
        return out


def _summarise(
    point: dict[str, list[float | None]],
    boot: dict[str, list[float | None]],
    extra: dict[str, dict[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    result = {}
    for out, values in point.items():
        kept = [v for v in values if v is not None]
        lo, hi = _interval([v for v in boot[out] if v is not None])
        result[out] = {
            "drop": float(np.mean(kept)) if kept else None,
            "std": float(np.std(kept)) if len(kept) > 1 else 0.0,
            "ci_low": lo,
            "ci_high": hi,
            **(extra or {}).get(out, {}),
        }
    return result


def modality_importance(
    model: MultimodalModel,
    dataset: TableDataset,
    pipeline: TablePipeline,
    repeats: int = 20,
    seed: int = 0,
    encoded: tuple[Tensors, Tensors] | None = None,
) -> dict[str, Any]:
    """Per modality and output, the drop of the main metric when the modality is masked
    (``ablation``) and when it is permuted across rows (``permutation``; mean over ``repeats``
    permutations). ``ci_low`` / ``ci_high``: the 2.5 / 97.5 percentiles of the drop over
    ``repeats`` bootstrap resamples of the rows (paired: the same rows with and without the
    modality; for permutation, a new permutation each time). ``encoded``: the dataset's
    :func:`encode_dataset` output, if already computed."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    scorer = _Scorer(model, dataset, pipeline)
    emb, masks = encoded if encoded is not None else encode_dataset(model, dataset)
    clean = fuse_all(model, emb, masks)
    base = scorer(clean)
    higher = {o: HIGHER_IS_BETTER[MAIN_METRIC[t]] for o, t in scorer.outputs.items()}
    gen = torch.Generator().manual_seed(seed)
    n, items = dataset.n_rows, len(dataset)  # items: the rows, or their windows
    samples = [torch.randint(0, n, (n,), generator=gen) for _ in range(repeats)]
    base_boot = [scorer(clean, rows) for rows in samples]
    modalities: dict[str, Any] = {}
    for name in model.inputs:
        masked = fuse_all(model, emb, {**masks, name: torch.zeros_like(masks[name])})
        full, boot = _perturbed(scorer, base, base_boot, higher, [masked], samples)
        metric = {o: {"metric": v} for o, v in scorer(masked).items()}
        entry = {"ablation": _summarise(full, boot, metric)}
        perms = [torch.randperm(items, generator=gen) for _ in range(repeats)]
        shuffled = [
            fuse_all(model, {**emb, name: emb[name][p]}, {**masks, name: masks[name][p]})
            for p in perms
        ]
        full, boot = _perturbed(scorer, base, base_boot, higher, shuffled, samples)
        entry["permutation"] = _summarise(full, boot)
        modalities[name] = entry
    return {
        "metric": {o: MAIN_METRIC[t] for o, t in scorer.outputs.items()},
        "higher_is_better": higher,
        "baseline": base,
        "n_rows": n,
        "repeats": repeats,
        "modalities": modalities,
    }


def _perturbed(
    scorer: _Scorer,
    base: dict[str, float | None],
    base_boot: list[dict[str, float | None]],
    higher: dict[str, bool],
    variants: list[Tensors],
    samples: list[Tensor],
) -> tuple[dict[str, list[float | None]], dict[str, list[float | None]]]:
    """Drops on all rows (one per variant) and on each bootstrap sample (cycling the variants)."""
    full: dict[str, list[float | None]] = {o: [] for o in scorer.outputs}
    boot: dict[str, list[float | None]] = {o: [] for o in scorer.outputs}
    for logits in variants:
        for o, v in scorer(logits).items():
            full[o].append(_drop(base[o], v, higher[o]))
    for r, rows in enumerate(samples):
        values = scorer(variants[r % len(variants)], rows)
        for o, v in values.items():
            boot[o].append(_drop(base_boot[r][o], v, higher[o]))
    return full, boot


def focus(
    model: MultimodalModel,
    output: str,
    logits: Tensor,
    pipeline: TablePipeline,
    pred: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Per row, the quantity whose change measures importance, (N, K): the probability of class
    ``pred`` (default: the predicted class) for binary / multiclass, every label's probability
    (multilabel), the prediction in the target's units (regression); and the predicted class."""
    head = model.heads[output]
    decoded = head.decode(logits)  # type: ignore[operator]
    predicted = decoded["pred"]
    if head.task == "regression":
        value = pipeline.targets[output].inverse(predicted).reshape(len(logits), -1)
        return value, predicted
    proba = decoded["proba"]
    if head.task == "multilabel":
        return proba, predicted
    chosen = predicted if pred is None else pred
    return proba.gather(1, chosen.reshape(-1, 1)), predicted


def row_importance(
    model: MultimodalModel,
    embeddings: Tensors,
    masks: Tensors,
    pipeline: TablePipeline,
    output: str,
    classes: Tensor | None = None,
    row_of: Tensor | None = None,
) -> dict[str, np.ndarray]:
    """``{input: (N,)}``: how much each row's prediction moves when that input alone is masked
    (occlusion). Classification: the fall of the probability of the predicted class (or of
    ``classes``, one per row); multilabel: the mean absolute change over labels; regression:
    prediction minus prediction without it. Rows where the input is already missing get 0.
    ``row_of``: embeddings per window, each window's row (predictions averaged per row)."""
    check_output(model, output)
    task = task_of(model, output)
    n = len(next(iter(masks.values()))) if row_of is None else int(row_of[-1]) + 1

    def rows(logits: Tensor) -> Tensor:
        return logits if row_of is None else W.aggregate_logits(task, logits, row_of, n)

    clean = rows(fuse_all(model, embeddings, masks)[output])
    base, pred = focus(model, output, clean, pipeline, classes)
    pred = pred if classes is None else classes
    present = masks if row_of is None else W.row_masks(masks, row_of, n)
    result = {}
    for name in model.inputs:
        off = {**masks, name: torch.zeros_like(masks[name])}
        value, _ = focus(model, output, rows(fuse_all(model, embeddings, off)[output]), pipeline,
                         pred)  # fmt: skip
        delta = (base - value).abs() if task == "multilabel" else base - value
        result[name] = (delta.mean(-1) * present[name].float()).numpy()
    return result


def check_output(model: MultimodalModel, output: str) -> None:
    """``output`` is one of the model's classification / regression outputs."""
    if output not in scored_outputs(model):
        valid = ", ".join(scored_outputs(model)) or "none"
        raise ImportanceError(
            f"the model has no output {output!r} to explain; its outputs are: {valid}"
        )


def importance_table_rows(result: dict[str, Any]) -> list[list[Any]]:
    """``[modality, output, method, drop, ci_low, ci_high]`` rows, most important first."""
    rows = []
    for name, entry in result["modalities"].items():
        for method in ("ablation", "permutation"):
            for output, s in entry[method].items():
                rows.append([name, output, method, s["drop"], s["ci_low"], s["ci_high"]])
    return sorted(rows, key=lambda r: (r[1], r[2], -(r[3] if r[3] is not None else -np.inf)))


def importance_table(result: dict[str, Any]) -> str:
    """Markdown table of a :func:`modality_importance` result."""
    lines = [
        "| modality | output | method | drop | 95% interval |",
        "|---|---|---|---|---|",
    ]
    for name, output, method, drop, lo, hi in importance_table_rows(result):
        if drop is None:
            lines.append(f"| {name} | {output} | {method} | n/a | n/a |")
            continue
        interval = "n/a" if lo is None else f"[{lo:.4f}, {hi:.4f}]"
        lines.append(f"| {name} | {output} | {method} | {drop:.4f} | {interval} |")
    metrics = ", ".join(f"{o}: {m}" for o, m in result["metric"].items())
    base = ", ".join(f"{o} {v:.4f}" for o, v in result["baseline"].items() if v is not None)
    return f"Drop in {metrics} (baseline {base}; {result['n_rows']} rows)\n\n" + "\n".join(lines)


def write_importance(result: dict[str, Any], folder: str | Path) -> list[Path]:
    """``importance.json``, ``importance.md`` and ``importance.png`` in ``folder``."""
    from polymodal.evaluation.plots import importance as chart

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "importance.json", result)
    atomic_write_text(out / "importance.md", importance_table(result) + "\n")
    (out / "importance.png").write_bytes(chart(result))
    return [out / "importance.json", out / "importance.md", out / "importance.png"]
