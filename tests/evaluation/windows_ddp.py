"""Run as two processes by test_window_aggregation.py (RANK / WORLD_SIZE / MASTER_* set): each
scores a windowed model on a table, in memory and streamed, with ``evaluate_all`` (gloo), and
writes its report to ``<out>/rank<R>.json``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch.distributed as dist

from polymodal import Predictor
from polymodal.data.io import read_any
from polymodal.data.source import TableSource
from polymodal.data.stream import StreamingTable
from polymodal.evaluation.distributed import evaluate_all


def main() -> None:
    model_dir, table, out = sys.argv[1:4]
    dist.init_process_group("gloo")
    art = Predictor.load(model_dir).artifact_
    frame, base, src = read_any(table, "evaluate")
    memory = evaluate_all(art.model, art.pipeline.dataset(frame, base, src), art.pipeline, 4)
    stream = StreamingTable(TableSource(table), art.pipeline)
    streamed = evaluate_all(art.model, stream, art.pipeline, batch_size=3)
    rank = os.environ["RANK"]
    Path(out, f"rank{rank}.json").write_text(json.dumps({"memory": memory, "stream": streamed}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
