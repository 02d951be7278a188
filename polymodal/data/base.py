"""What every preprocessor promises: fit on the training split, transform a column into a tensor
plus a presence mask, augment a batch at train time, and save/restore its state as JSON.

Preprocessors are registered as ``@register("preprocessor", <modality>)``; their ``__init__``
options are the ``preprocessing:`` block of an input's config.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import torch

from polymodal import registry
from polymodal.data.paths import ANYWHERE, FileAccess
from polymodal.data.stats import Stats
from polymodal.utils.errors import PolymodalError


class DataError(PolymodalError, ValueError):
    """Bad input data; the message names the file, row, column and what was expected."""


def where(source: str, row: Any, column: str) -> str:
    """Uniform location prefix for data errors: ``file, row R, column 'C'``."""
    return f"{source}, row {row}, column {column!r}"


@dataclass
class Transformed:
    """One input's tensors for N rows.

    ``values`` holds either one entry per row, or (when ``index`` is set) one entry per *unique*
    cell with ``index[row]`` pointing at it, so a clip reused by 30 rows is decoded and stored once.
    ``present`` is a bool [N] mask: False where the cell was missing (or unreadable and masked).
    ``row_of`` (a windowed input, e.g. a long series cut into windows): its entries are windows,
    ``row_of[i]`` the table row window ``i`` belongs to (ascending, every row at least once);
    :class:`~polymodal.data.dataset.TableDataset` then repeats the other inputs and the targets
    per window.
    """

    values: torch.Tensor
    present: torch.Tensor
    index: torch.Tensor | None = None
    n_bad: int = 0  # unreadable cells that were masked (data.bad_cells == "mask")
    row_of: torch.Tensor | None = None  # windowed input: the row of each entry

    def __len__(self) -> int:
        return int(self.present.shape[0])

    def rows(self, rows: torch.Tensor) -> torch.Tensor:
        return self.values[self.index[rows]] if self.index is not None else self.values[rows]


class Preprocessor(abc.ABC):
    """Base class: subclasses set ``modality`` and implement ``transform`` (and usually ``fit``)."""

    modality: ClassVar[str] = ""
    # axis 1 of its tensors is a sequence whose length varies from table to table (tokens, time
    # steps): ONNX export makes it dynamic
    sequence: ClassVar[bool] = False

    def fit(
        self,
        frame: pd.DataFrame,
        columns: list[str],
        base_dir: Path,
        access: FileAccess = ANYWHERE,
    ) -> Preprocessor:
        """Learn state (vocab, statistics) from the training rows only: one ``partial_fit`` over
        all of them, then ``finish_fit``, the same code a streamed fit runs chunk by chunk."""
        stats = self.partial_fit(frame, columns, base_dir, access=access)
        return self.finish_fit(stats, columns)

    def partial_fit(
        self,
        frame: pd.DataFrame,
        columns: list[str],
        base_dir: Path,
        stats: Stats | None = None,
        source: str = "<train>",
        access: FileAccess = ANYWHERE,
    ) -> Stats:
        """``stats`` updated with these rows' statistics; statistics of different parts of the
        training rows combine with :func:`polymodal.data.stats.merge` (chunks, workers, ranks).
        ``access``: which folders path cells may name (see :mod:`polymodal.data.paths`)."""
        if type(self).fit is not Preprocessor.fit:
            raise DataError(
                f"{source}: the {self.modality} preprocessor {type(self).__name__} can only be "
                "fitted in memory (it overrides fit, not partial_fit); set data.streaming: false"
            )
        return {} if stats is None else stats

    def finish_fit(self, stats: Stats, columns: list[str]) -> Preprocessor:
        """Fitted state from the merged statistics of all training rows."""
        return self

    @abc.abstractmethod
    def transform(
        self,
        frame: pd.DataFrame,
        columns: list[str],
        base_dir: Path,
        source: str = "<table>",
        bad_cells: str = "raise",
        access: FileAccess = ANYWHERE,
    ) -> Transformed:
        """Tensors for every row of ``frame``; errors name ``source``, the row and the column.
        ``access``: which folders path cells may name (a pipeline passes its own)."""

    def augment(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Train-time augmentation of a batch ``x`` (identity unless the modality has one)."""
        return x

    @property
    def augments(self) -> bool:
        """Whether ``augment`` changes anything (then a row's tensor differs every epoch)."""
        return False

    @property
    def fixed_views(self) -> bool:
        """Whether ``augment`` gives each row one of a fixed few versions (the same ones every
        epoch), so a frozen encoder's features of them can be cached."""
        return False

    def spec(self) -> dict[str, Any]:
        """Facts the encoder needs from fitted data (``vocab_size``, ``in_features``, ...)."""
        return {}

    def fitted_state(self) -> dict[str, Any]:
        """JSON-serialisable fitted state (vocabularies, statistics)."""
        return {}

    def load_fitted_state(self, state: dict[str, Any]) -> None:  # noqa: B027 (optional hook)
        """Restore what :meth:`fitted_state` returned (stateless preprocessors keep this no-op)."""

    # -- generic save/load: options (the __init__ kwargs) + fitted state, all JSON ---------------
    def options(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in registry.parameters(type(self))}

    def state_dict(self) -> dict[str, Any]:
        return {"type": self.modality, "options": self.options(), "fitted": self.fitted_state()}

    @staticmethod
    def from_state(state: dict[str, Any]) -> Preprocessor:
        cls = registry.get("preprocessor", state["type"])
        pre: Preprocessor = cls(**state["options"])
        pre.load_fitted_state(state["fitted"])
        return pre
