"""All preprocessing of one experiment: a preprocessor per input and a target encoder per output,
fitted on the training split, applied to any table, saved and restored as JSON.

The same object serves training, evaluation and serving, so there is one code path from raw cells
to tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch

from polymodal import registry
from polymodal.config import InputConfig, OutputConfig
from polymodal.data.base import DataError, Preprocessor, Transformed
from polymodal.data.dataset import TableDataset
from polymodal.data.paths import FileAccess
from polymodal.data.seq_targets import make_target, target_from_state
from polymodal.data.targets import TargetEncoder


class TablePipeline:
    def __init__(
        self,
        inputs: list[InputConfig],
        outputs: list[OutputConfig],
        options: dict[str, dict[str, Any]],
        bad_cells: str = "raise",
        allow_outside: bool = False,  # path cells may name files outside the table's folder
        roots: list[str] | tuple[str, ...] = (),  # further folders path cells may name
    ) -> None:
        self.inputs = inputs
        self.outputs = outputs
        self.bad_cells = bad_cells
        self.access = FileAccess.of(allow_outside, roots)
        self.preprocessors: dict[str, Preprocessor] = {
            inp.name: registry.build(
                "preprocessor", {"type": inp.type, **options.get(inp.name, {})}
            )
            for inp in inputs
            if inp.tied is None
        }
        for inp in inputs:  # a tied input shares its owner's fitted preprocessor
            if inp.tied is not None:
                self.preprocessors[inp.name] = self.preprocessors[inp.tied]
        self.targets: dict[str, TargetEncoder] = {
            out.name: make_target(out.task, out.label_separator) for out in outputs
        }
        check_windows(self.preprocessors, outputs)

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame, base_dir: Path, source: str = "<train>") -> TablePipeline:
        check_columns(frame, [c for i in self.inputs for c in i.cols], source)
        check_columns(frame, self.target_columns(), source)
        for inp in self.inputs:
            if inp.tied is None:
                self.preprocessors[inp.name].fit(frame, inp.cols, base_dir, access=self.access)
        for out in self.outputs:
            self.targets[out.name].fit(self._target_cells(frame, out), source=source)
        return self

    # -- applying ----------------------------------------------------------------------------
    def transform_inputs(
        self, frame: pd.DataFrame, base_dir: Path, source: str = "<table>"
    ) -> dict[str, Transformed]:
        check_columns(frame, [c for i in self.inputs for c in i.cols], source)
        return {
            inp.name: self.preprocessors[inp.name].transform(
                frame,
                inp.cols,
                base_dir,
                source=source,
                bad_cells=self.bad_cells,
                access=self.access,
            )
            for inp in self.inputs
        }

    def transform_targets(
        self, frame: pd.DataFrame, source: str = "<table>"
    ) -> dict[str, torch.Tensor]:
        check_columns(frame, self.target_columns(), source)
        return {
            o.name: self.targets[o.name].transform(self._target_cells(frame, o), source=source)
            for o in self.outputs
        }

    def _pair_columns(self, out: OutputConfig) -> list[str]:
        by_name = {i.name: i for i in self.inputs}
        return [by_name[n].cols[0] for n in out.pair or []]

    def target_columns(self) -> list[str]:
        """The columns the outputs read: the target column, or a retrieval pair's two inputs."""
        cols = [c for o in self.outputs for c in self._pair_columns(o) or [o.name]]
        return list(dict.fromkeys(cols))

    def _target_cells(self, frame: pd.DataFrame, out: OutputConfig) -> Any:
        return frame[self._pair_columns(out)] if out.task == "retrieval" else frame[out.name]

    def dataset(
        self,
        frame: pd.DataFrame,
        base_dir: Path,
        source: str = "<table>",
        with_targets: bool = True,
    ) -> TableDataset:
        if with_targets and len(frame) == 0:  # nothing to train on or score
            raise DataError(
                f"{source}: the table has no rows; expected at least one labelled row to train "
                "or evaluate on"
            )
        inputs = self.transform_inputs(frame, base_dir, source)
        targets = self.transform_targets(frame, source) if with_targets else {}
        return TableDataset(inputs, targets)

    def augment(
        self, features: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Train-time augmentation of a batch, per modality."""
        return {k: self.preprocessors[k].augment(v, generator) for k, v in features.items()}

    # -- facts for the model -----------------------------------------------------------------
    def specs(self) -> dict[str, dict[str, Any]]:
        return {name: pre.spec() for name, pre in self.preprocessors.items()}

    def num_outputs(self) -> dict[str, int]:
        return {name: enc.num_outputs for name, enc in self.targets.items()}

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "bad_cells": self.bad_cells,
            **self.access.state_dict(),
            "inputs": {name: pre.state_dict() for name, pre in self.preprocessors.items()},
            "targets": {name: enc.state_dict() for name, enc in self.targets.items()},
        }

    @classmethod
    def from_state(
        cls, state: dict[str, Any], inputs: list[InputConfig], outputs: list[OutputConfig]
    ) -> TablePipeline:
        pipe = cls.__new__(cls)
        pipe.inputs, pipe.outputs = inputs, outputs
        pipe.bad_cells = state.get("bad_cells", "raise")
        pipe.access = FileAccess.of(state.get("allow_outside", False), state.get("roots", []))
        pipe.preprocessors = {k: Preprocessor.from_state(v) for k, v in state["inputs"].items()}
        pipe.targets = {k: target_from_state(v) for k, v in state["targets"].items()}
        return pipe


WINDOW_TASKS = ("binary", "multiclass", "multilabel", "regression")  # averaged per row


def check_windows(preprocessors: dict[str, Preprocessor], outputs: list[OutputConfig]) -> None:
    """A windowed input (one row, several windows) needs outputs whose window predictions can
    be averaged into the row's."""
    windowed = sorted(n for n, p in preprocessors.items() if getattr(p, "windowed", False))
    bad = [f"{o.name} ({o.task})" for o in outputs if o.task not in WINDOW_TASKS]
    if windowed and bad:
        raise ValueError(
            f"input {windowed[0]!r} is cut into windows, whose predictions are averaged per row; "
            f"outputs {bad} cannot be: expected tasks {', '.join(WINDOW_TASKS)}"
        )


def check_columns(frame: pd.DataFrame, columns: list[str], source: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{source}: missing column(s) {missing}; the table has {list(map(str, frame.columns))}"
        )
