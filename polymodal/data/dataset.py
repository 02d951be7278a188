"""In-memory dataset over preprocessed tensors: batches are gathered by indexing, not collated
sample by sample, so the per-step cost stays tiny (decoding happened once, in ``transform``).

A windowed input (a long series cut into windows, see ``Transformed.row_of``) makes the windows
the dataset's items: the other inputs and the targets are repeated per window (by index, no
copy), and ``row_of`` says which table row each item came from, so predictions can be brought
back to one per row (:mod:`polymodal.evaluation.windows`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch.utils.data import Dataset

from polymodal.data.base import Transformed

Batch = dict[str, dict[str, torch.Tensor]]  # {"features", "masks", "targets"} -> name -> tensor


class TableDataset(Dataset[Batch]):
    """Rows (or windows of rows) of a table as tensors. ``__getitems__`` returns a whole batch,
    which the DataLoader passes through ``collate_batch`` untouched.

    ``row_of``: for items that are already windows (inputs and targets given per window), the
    table row of each; inputs carrying their own ``row_of`` are expanded here instead."""

    def __init__(
        self,
        inputs: dict[str, Transformed],
        targets: dict[str, torch.Tensor],
        row_of: torch.Tensor | None = None,
    ) -> None:
        if row_of is None:
            inputs, targets, row_of = expand_windows(inputs, targets)
        sizes = {len(t) for t in inputs.values()} | {int(t.shape[0]) for t in targets.values()}
        if row_of is not None:
            sizes.add(len(row_of))
        if len(sizes) != 1:
            raise ValueError(f"inputs and targets disagree on the number of rows: {sorted(sizes)}")
        self.inputs = dict(sorted(inputs.items()))
        self.targets = dict(sorted(targets.items()))
        self.n = sizes.pop()
        self.row_of = row_of  # (n,) table row of each item (a window), or None: items are rows

    def __len__(self) -> int:
        return self.n

    @property
    def n_rows(self) -> int:
        """Table rows behind the items (``len(self)`` unless windowed)."""
        if self.row_of is None:
            return self.n
        return int(self.row_of[-1]) + 1 if len(self.row_of) else 0

    def __getitem__(self, row: int) -> Batch:
        return self.__getitems__([row])

    def __getitems__(self, rows: list[int]) -> Batch:
        idx = torch.as_tensor(rows, dtype=torch.long)
        return {
            "features": {k: t.rows(idx) for k, t in self.inputs.items()},
            "masks": {k: t.present[idx] for k, t in self.inputs.items()},
            "targets": {k: t[idx] for k, t in self.targets.items()},
        }


def expand_windows(
    inputs: dict[str, Transformed], targets: dict[str, torch.Tensor]
) -> tuple[dict[str, Transformed], dict[str, torch.Tensor], torch.Tensor | None]:
    """Inputs and targets per window when an input is windowed (one row: its windows' rows), and
    the row of each window; unchanged (and None) otherwise. Several windowed inputs must cut
    their rows alike (e.g. two views of one series column)."""
    windowed = {k: t.row_of for k, t in inputs.items() if t.row_of is not None}
    if not windowed:
        return inputs, targets, None
    first, row_of = next(iter(windowed.items()))
    for name, other in windowed.items():
        if not torch.equal(other, row_of):
            raise ValueError(
                f"inputs {first!r} and {name!r} are cut into different windows; expected one "
                "windowed input (or series that give every row the same number of windows)"
            )
    n_rows = int(row_of[-1]) + 1 if len(row_of) else 0
    out: dict[str, Transformed] = {}
    for name, t in inputs.items():
        if t.row_of is not None:
            out[name] = replace(t, row_of=None)
            continue
        if len(t) != n_rows:
            raise ValueError(
                f"input {name!r} has {len(t)} rows; the windowed input {first!r} has {n_rows}"
            )
        index = row_of if t.index is None else t.index[row_of]
        out[name] = replace(t, present=t.present[row_of], index=index)
    bad = {k: int(v.shape[0]) for k, v in targets.items() if int(v.shape[0]) != n_rows}
    if bad:
        raise ValueError(f"targets {bad} disagree with the {n_rows} rows of the inputs")
    return out, {k: v[row_of] for k, v in targets.items()}, row_of


def collate_batch(batch: Any) -> Any:
    """Identity collate: ``__getitems__`` already built the batch."""
    return batch
