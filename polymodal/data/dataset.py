"""In-memory dataset over preprocessed tensors: batches are gathered by indexing, not collated
sample by sample, so the per-step cost stays tiny (decoding happened once, in ``transform``)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from polymodal.data.base import Transformed

Batch = dict[str, dict[str, torch.Tensor]]  # {"features", "masks", "targets"} -> name -> tensor


class TableDataset(Dataset[Batch]):
    """Rows of a table as tensors. ``__getitems__`` returns a whole batch, which the DataLoader
    passes through ``collate_batch`` untouched."""

    def __init__(self, inputs: dict[str, Transformed], targets: dict[str, torch.Tensor]) -> None:
        sizes = {len(t) for t in inputs.values()} | {int(t.shape[0]) for t in targets.values()}
        if len(sizes) != 1:
            raise ValueError(f"inputs and targets disagree on the number of rows: {sorted(sizes)}")
        self.inputs = dict(sorted(inputs.items()))
        self.targets = dict(sorted(targets.items()))
        self.n = sizes.pop()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, row: int) -> Batch:
        return self.__getitems__([row])

    def __getitems__(self, rows: list[int]) -> Batch:
        idx = torch.as_tensor(rows, dtype=torch.long)
        return {
            "features": {k: t.rows(idx) for k, t in self.inputs.items()},
            "masks": {k: t.present[idx] for k, t in self.inputs.items()},
            "targets": {k: t[idx] for k, t in self.targets.items()},
        }


def collate_batch(batch: Any) -> Any:
    """Identity collate: ``__getitems__`` already built the batch."""
    return batch
