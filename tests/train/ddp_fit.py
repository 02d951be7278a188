"""Run by ``torchrun`` from test_distributed.py: the fits listed in a JSON spec, in order.

Each rank records every artifact it saves (a marker file per call), so the test can check that
one process wrote one artifact. A run may ask one rank to die mid-epoch (``die``: rank, and the
training batch at which it exits), as a crashed or preempted node would.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import polymodal.api as api
import polymodal.train.loop as loop
from polymodal import Predictor

RANK = int(os.environ.get("RANK", "0"))


def record_saves(marks: Path) -> None:
    original = api.save_artifact

    def recording(path: Any, art: Any) -> Any:
        marks.mkdir(parents=True, exist_ok=True)
        (marks / f"rank{RANK}-pid{os.getpid()}-{Path(path).name}").touch()
        return original(path, art)

    api.save_artifact = recording


def die_at(batch: int) -> None:
    """Exit (as a killed process would, no cleanup) when the ``batch``-th training batch comes."""
    original, seen = loop.modality_dropout, [0]

    def dying(*args: Any, **kwargs: Any) -> Any:
        seen[0] += 1
        if seen[0] == batch:
            os._exit(3)
        return original(*args, **kwargs)

    loop.modality_dropout = dying  # type: ignore[assignment]


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    record_saves(Path(spec["marks"]))
    for run in spec["runs"]:
        if run.get("die") and run["die"]["rank"] == RANK:
            die_at(run["die"]["batch"])
        Predictor(run["config"]).fit(run["train"], val=run["val"], output_dir=run["out"])


if __name__ == "__main__":
    main()
