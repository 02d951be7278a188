"""Run a model over a dataset and score every output: ``evaluate(model, dataset, pipeline)``."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from polymodal.data.dataset import TableDataset, collate_batch
from polymodal.data.pipeline import TablePipeline
from polymodal.data.seq_targets import CaptionTargets
from polymodal.encoders.cache import warm_model
from polymodal.evaluation import metrics as M
from polymodal.evaluation import windows as W
from polymodal.utils.progress import progress

PROGRESS_ROWS = 2048  # fewer rows (a served request, a small check) never show progress
# a gold caption's out-of-vocabulary word in the references BLEU reads: one token that no
# generated caption holds (a caption head never writes <unk>); "<unk>" itself would count as
# three ("<", "unk", ">") and lengthen the reference
UNSEEN_WORD = "\u2047"


def move(batch: Any, device: torch.device | str) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: move(v, device) for k, v in batch.items()}
    return batch


@torch.no_grad()
def predict_logits(
    model: nn.Module | Any,  # or anything with its call signature, e.g. export.onnx.OnnxModel
    dataset: TableDataset,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """Concatenated raw outputs of ``model`` over ``dataset`` in row order."""
    was_training = model.training
    model.eval()
    inputs = getattr(dataset, "inputs", None)  # a Subset (one rank's share) has none
    if isinstance(model, nn.Module) and inputs:  # frozen encoders with a cache: a sorted pass
        warm_model(model, {k: t.values for k, t in inputs.items()}, batch_size)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_batch)
    chunks: dict[str, list[torch.Tensor]] = {}
    rows = len(dataset) if len(dataset) >= PROGRESS_ROWS else 0  # small calls stay silent
    with progress(rows, "predicting") as bar:
        for batch in loader:
            batch = move(batch, device)
            out = model(batch["features"], batch["masks"])
            for k, v in out.items():
                chunks.setdefault(k, []).append(v.float().cpu())
            bar.advance(len(next(iter(batch["masks"].values()))))
    model.train(was_training)
    return {k: torch.cat(v) for k, v in chunks.items()}


def score(
    task: str,
    decoded: dict[str, torch.Tensor],
    target: torch.Tensor,
    pipeline: TablePipeline,
    name: str,
) -> dict[str, Any]:
    """Metrics for one output from the head's decoded predictions and the encoded targets."""
    enc = pipeline.targets[name]
    if task == "caption":  # references decoded from the gold ids, as generated text is
        refs = cast(CaptionTargets, enc).decode(target, unknown=UNSEEN_WORD)
        return M.caption_metrics(enc.decode(decoded["pred"]), refs)
    y = target.cpu().numpy()
    if task == "binary":
        return M.binary_metrics(y, decoded["proba"][:, 1].numpy())
    if task == "multiclass":
        return M.multiclass_metrics(y, decoded["proba"].numpy())
    if task == "multilabel":
        return M.multilabel_metrics(y, decoded["proba"].numpy())
    pred = enc.inverse(decoded["pred"]).numpy()
    return M.regression_metrics(enc.inverse(target).numpy(), pred)


def evaluate(
    model: nn.Module,
    dataset: TableDataset,
    pipeline: TablePipeline,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    loss_weights: dict[str, float] | None = None,
    runner: Any = None,
) -> dict[str, Any]:
    """``{"loss": float, <output>: {metric: value}}`` over the whole dataset. ``runner`` (e.g.
    an ONNX Runtime model) computes the logits in place of ``model``, whose heads score them.
    Windowed rows (``dataset.row_of``) are scored per row, from their windows' mean
    log-probabilities, plus ``window_accuracy`` (or ``window_rmse``) of the windows alone."""
    logits = predict_logits(runner or model, dataset, batch_size, device)
    masks = {k: t.present for k, t in dataset.inputs.items()}
    targets, windows = dataset.targets, None
    if dataset.row_of is not None:
        windows = W.window_metrics(model, logits, targets, pipeline)
        n, row_of = dataset.n_rows, dataset.row_of
        logits = W.to_rows(model, logits, row_of, n)
        masks, targets = W.row_masks(masks, row_of, n), W.row_targets(targets, row_of, n)
    report: dict[str, Any] = {}
    with torch.no_grad():  # heads that run a network in their loss (caption decoder)
        total, _ = model.loss(logits, targets, masks, loss_weights or {})  # type: ignore[operator]
    report["loss"] = float(total)
    for name, head in model.heads.items():  # type: ignore[union-attr,operator]
        if head.task == "retrieval":
            report[name] = retrieval_score(head, logits[name], targets[name])
            continue
        decoded = head.decode(logits[name])
        report[name] = score(head.task, decoded, targets[name], pipeline, name)
        report[name].update((windows or {}).get(name, {}))
    report["n_rows"] = dataset.n_rows
    if windows is not None:
        report["n_windows"] = len(dataset)
    return report


def retrieval_score(head: nn.Module, embeddings: torch.Tensor, ids: torch.Tensor) -> dict[str, Any]:
    """R@1/5/10 and median rank both ways over the rows whose two sides are present."""
    a, b = embeddings[:, 0], embeddings[:, 1]  # (N, dim) unit vectors, zeros where missing
    present = (a.abs().sum(-1) > 0) & (b.abs().sum(-1) > 0)
    names = (str(head.pair[0]), str(head.pair[1]))  # type: ignore[index]
    return M.retrieval_metrics(
        a[present].numpy(), b[present].numpy(), ids[present].cpu().numpy(), names
    )


def monitor_value(report: dict[str, Any], monitor: str | None) -> tuple[float, bool]:
    """The early-stopping value and whether higher is better. ``monitor`` is ``"loss"`` or
    ``"<output>.<metric>"``; default ``"loss"``."""
    if not monitor or monitor == "loss":
        return float(report["loss"]), False
    output, _, metric = monitor.partition(".")
    if output not in report or metric not in report[output]:
        valid = [f"{o}.{m}" for o, ms in report.items() if isinstance(ms, dict) for m in ms]
        raise ValueError(
            f"trainer.monitor {monitor!r} is not a metric; valid choices: loss, {', '.join(valid)}"
        )
    value = report[output][metric]
    higher = M.higher_is_better(metric)
    if value is None:
        return (-np.inf if higher else np.inf), higher
    return float(value), higher
