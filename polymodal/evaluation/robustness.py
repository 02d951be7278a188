"""Robustness of a trained model: its metric with each modality removed (masked), and under
increasing noise on each modality, on the same rows."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polymodal.data.base import Transformed
from polymodal.data.dataset import TableDataset
from polymodal.data.pipeline import TablePipeline
from polymodal.evaluation.evaluate import evaluate

NOISE_LEVELS = (0.1, 0.25, 0.5, 1.0)
MAIN_METRIC = {
    "binary": "roc_auc",
    "multiclass": "accuracy",
    "multilabel": "micro_f1",
    "regression": "rmse",
    "retrieval": "mean_R@10",
    "caption": "bleu4",
}


def _materialise(t: Transformed) -> Transformed:
    """One value per row (noise must not be shared by rows that reuse a cell)."""
    if t.index is None:
        return t
    return replace(t, values=t.values[t.index], index=None)


def masked(t: Transformed) -> Transformed:
    return replace(t, present=torch.zeros_like(t.present))


def noisy(
    t: Transformed, level: float, generator: torch.Generator, spec: dict[str, Any]
) -> Transformed:
    """Float features: add Gaussian noise of ``level`` x their std. Token/category ids: replace a
    ``level`` fraction of the non-pad ids by random valid ids (>= 1, i.e. never padding/missing)."""
    t = _materialise(t)
    v = t.values
    if v.is_floating_point():
        scale = float(v.std()) if v.numel() > 1 else 1.0
        noise = torch.randn(v.shape, generator=generator) * level * scale
        return replace(t, values=v + noise)
    # id bounds: one per categorical column (spec "cardinalities"), or the text vocabulary
    bounds = spec.get("cardinalities") or [spec.get("vocab_size") or int(v.max()) + 1]
    high = torch.tensor(bounds).clamp(min=2)  # (K,) or (1,): broadcasts over the last dim
    random_ids = 1 + (torch.rand(v.shape, generator=generator) * (high - 1)).long()
    swap = (torch.rand(v.shape, generator=generator) < level) & (v != 0)
    return replace(t, values=torch.where(swap, random_ids, v))


def _noisy(t: Transformed, level: float, generator: torch.Generator, pre: Any) -> Transformed:
    """The preprocessor's own ``noise`` where it has one (a series: real steps only, its step
    mask kept), else :func:`noisy`."""
    own = getattr(pre, "noise", None)
    if own is None:
        return noisy(t, level, generator, pre.spec())
    t = _materialise(t)
    return replace(t, values=own(t.values, level, generator))


def _main(report: dict[str, Any], output: str, task: str) -> float | None:
    value = report[output].get(MAIN_METRIC[task])
    return None if value is None else float(value)


def robustness(
    model: nn.Module,
    dataset: TableDataset,
    pipeline: TablePipeline,
    noise_levels: tuple[float, ...] = NOISE_LEVELS,
    seed: int = 0,
) -> dict[str, Any]:
    """``{"metric": {output: name}, "rows": [{"modality", "condition", "level", <output>: value}]}``."""
    tasks = {name: head.task for name, head in model.heads.items()}  # type: ignore[union-attr,operator]

    def run(
        inputs: dict[str, Transformed], modality: str, condition: str, level: float
    ) -> dict[str, Any]:
        data = TableDataset(inputs, dataset.targets, row_of=dataset.row_of)
        report = evaluate(model, data, pipeline)
        row: dict[str, Any] = {"modality": modality, "condition": condition, "level": level}
        row.update({o: _main(report, o, t) for o, t in tasks.items()})
        return row

    rows = [run(dataset.inputs, "all", "clean", 0.0)]
    gen = torch.Generator().manual_seed(seed)
    for name, t in dataset.inputs.items():
        rows.append(run({**dataset.inputs, name: masked(t)}, name, "missing", 1.0))
        pre = pipeline.preprocessors[name]
        for level in noise_levels:
            rows.append(
                run({**dataset.inputs, name: _noisy(t, level, gen, pre)}, name, "noise", level)
            )
    return {"metric": {o: MAIN_METRIC[t] for o, t in tasks.items()}, "rows": rows}


def robustness_table(result: dict[str, Any]) -> str:
    """Markdown table of a :func:`robustness` result."""
    outputs = list(result["metric"])
    head = (
        "| modality | condition | level | "
        + " | ".join(f"{o} {result['metric'][o]}" for o in outputs)
        + " |"
    )
    lines = [head, "|" + "---|" * (3 + len(outputs))]
    for r in result["rows"]:
        vals = " | ".join("n/a" if r[o] is None else f"{r[o]:.4f}" for o in outputs)
        lines.append(f"| {r['modality']} | {r['condition']} | {r['level']:g} | {vals} |")
    return "\n".join(lines)


def robustness_plot(result: dict[str, Any], path: str | Path) -> Path:
    """One line per modality: metric against noise level (level 0 = clean), missing as a marker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outputs = list(result["metric"])
    fig, axes = plt.subplots(1, len(outputs), figsize=(5 * len(outputs), 3.6), squeeze=False)
    clean = result["rows"][0]
    for ax, output in zip(axes[0], outputs, strict=True):
        modalities = sorted({r["modality"] for r in result["rows"]} - {"all"})
        for m in modalities:
            pts = [(0.0, clean[output])] + [
                (r["level"], r[output])
                for r in result["rows"]
                if r["modality"] == m and r["condition"] == "noise"
            ]
            line = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=m)[0]
            miss = [
                r[output]
                for r in result["rows"]
                if r["modality"] == m and r["condition"] == "missing"
            ]
            if miss and miss[0] is not None:
                ax.axhline(miss[0], color=line.get_color(), linestyle=":", linewidth=1)
        ax.set_xlabel("noise level (x feature std / fraction of tokens)")
        ax.set_ylabel(f"{output} {result['metric'][output]}")
        ax.set_title("dotted: modality missing")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
