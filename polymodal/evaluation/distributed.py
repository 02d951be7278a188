"""Evaluate across processes: each rank scores its share of the rows, the logits are gathered,
and every rank computes the same report over the whole set, each row counted once.

Works for in-memory datasets (rank ``r`` takes a contiguous slice) and streaming tables (each
rank reads its shard). With one process it is :func:`~polymodal.evaluation.evaluate.evaluate`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import Subset

from polymodal.data.base import Transformed
from polymodal.data.dataset import TableDataset
from polymodal.data.pipeline import TablePipeline
from polymodal.data.shards import rank_bounds
from polymodal.data.stream import StreamingTable
from polymodal.evaluation.evaluate import evaluate, move, predict_logits
from polymodal.utils import dist

Tensors = dict[str, torch.Tensor]


class Precomputed:
    """Stands in for the model inside ``evaluate``: returns logits computed (and gathered)
    beforehand, looked up by the row ids the dataset's features carry."""

    training = False

    def __init__(self, logits: Tensors) -> None:
        self.logits = logits

    def eval(self) -> Precomputed:
        return self

    def train(self, mode: bool = True) -> Precomputed:
        return self

    def __call__(self, features: Tensors, masks: Tensors) -> Tensors:
        ids = next(iter(features.values())).cpu()
        return {k: v[ids] for k, v in self.logits.items()}


def score(
    model: nn.Module,
    logits: Tensors,
    targets: Tensors,
    masks: Tensors,
    pipeline: TablePipeline,
    loss_weights: dict[str, float] | None,
    row_of: torch.Tensor | None = None,
) -> dict[str, Any]:
    """``evaluate``'s report for logits already computed, with their targets and masks (per
    window, with each window's row in ``row_of``, for windowed inputs)."""
    n = len(next(iter(masks.values())))
    ids = torch.arange(n)
    inputs = {k: Transformed(ids, m.bool()) for k, m in masks.items()}
    rows = TableDataset(inputs, targets, row_of=row_of)
    return evaluate(model, rows, pipeline, loss_weights=loss_weights, runner=Precomputed(logits))


@torch.no_grad()
def _stream_outputs(
    model: nn.Module, table: StreamingTable, device: str | torch.device
) -> tuple[Tensors, Tensors, Tensors, torch.Tensor | None]:
    """(logits, targets, masks) over the rows of this rank's shard of ``table``; for windowed
    inputs they are per window, and the fourth item is each window's row in the shard."""
    was_training = model.training
    model.eval()
    parts: dict[str, dict[str, list[torch.Tensor]]] = {"logits": {}, "targets": {}, "masks": {}}
    rows: list[torch.Tensor] = []
    for batch in table:
        if "windows" in batch:  # the windows of whole rows: number the rows across batches
            local = batch["windows"]["row"]
            rows.append(local + (int(rows[-1][-1]) + 1 if rows else 0))
        batch = move(batch, device)
        out = model(batch["features"], batch["masks"])
        for key, values in (
            ("logits", out),
            ("targets", batch["targets"]),
            ("masks", batch["masks"]),
        ):
            for k, v in values.items():
                parts[key].setdefault(k, []).append(v.float().cpu() if key == "logits" else v.cpu())
    model.train(was_training)
    logits, targets, masks = ({k: torch.cat(v) for k, v in parts[p].items()} for p in parts)
    return logits, targets, masks, (torch.cat(rows) if rows else None)


def evaluate_all(
    model: nn.Module,
    data: TableDataset | StreamingTable,
    pipeline: TablePipeline,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    loss_weights: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The report of ``evaluate`` over every row of ``data``, computed by all processes."""
    rank, world = dist.rank(), dist.world_size()
    if isinstance(data, StreamingTable):
        world = world if data.rows >= world else 1  # tiny tables: every rank reads them all
        data.shard(rank if world > 1 else 0, world, batch_size)
        data.set_epoch(0)
        logits, targets, masks, row_of = _stream_outputs(model, data, device)
        if world > 1:
            logits, targets, masks = (
                {k: dist.gather_rows(v) for k, v in part.items()}
                for part in (logits, targets, masks)
            )
            row_of = None if row_of is None else gather_windows(row_of)
        return score(model, logits, targets, masks, pipeline, loss_weights, row_of)
    if world == 1 or len(data) < world:
        return evaluate(model, data, pipeline, batch_size, device, loss_weights)
    lo, hi = rank_bounds(len(data), world, rank, drop_remainder=False)
    mine = predict_logits(model, Subset(data, range(lo, hi)), batch_size, device)  # type: ignore[arg-type]
    logits = {k: dist.gather_rows(v) for k, v in mine.items()}
    masks = {k: t.present for k, t in data.inputs.items()}
    return score(model, logits, data.targets, masks, pipeline, loss_weights, data.row_of)


def gather_windows(row_of: torch.Tensor) -> torch.Tensor:
    """Each rank's window -> row numbers (0.. within its shard) as one numbering over all
    ranks' rows, in rank order."""
    counts = dist.gather_json(int(row_of[-1]) + 1 if len(row_of) else 0)
    offset = sum(counts[: dist.rank()])
    return dist.gather_rows(row_of + offset)


__all__ = ["Precomputed", "evaluate_all", "gather_windows", "score"]
