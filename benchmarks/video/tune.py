"""Settings check on validation rows only (never the test table): fit Moving AV-MNIST methods on a
subset of the training clips and print, per epoch, the validation accuracies and the epoch's
seconds. What README.md's "How settings were chosen" reports came from this script.

    python benchmarks/video/tune.py --rows 2000 --epochs 3 --methods frames_diff,frames_gru
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import avmnist_config  # noqa: E402
from run import SETTINGS, fit, moving_avmnist  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/tmp/polymodal_video_bench"))
    ap.add_argument("--rows", type=int, default=2000, help="training clips used")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--methods", default="frames_diff,frames_gru")
    ap.add_argument("--set", action="append", default=[], help="trainer key=value (JSON value)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    settings = SETTINGS["full"]
    folder = moving_avmnist(args.data, settings)
    table = pd.read_csv(folder / "train.csv")
    val = table.sample(settings["val_rows"], random_state=0)
    train = table.drop(val.index).head(args.rows)
    for method in args.methods.split(","):
        cfg = avmnist_config(method, args.epochs)
        for item in args.set:
            key, value = item.split("=", 1)
            cfg["trainer"][key] = json.loads(value)
        pred = fit(cfg, train, val, folder)
        for h in pred.artifact_.history:
            scores = {
                o: round(v["accuracy"], 4) for o, v in h["val"].items() if isinstance(v, dict)
            }
            print(json.dumps({"method": method, "rows": len(train), "epoch": h["epoch"],
                              "seconds": round(h["seconds"], 1), "val": scores}), flush=True)  # fmt: skip
        print(
            json.dumps({"method": method, "fit_seconds": round(pred.wall_seconds_, 1)}), flush=True
        )


if __name__ == "__main__":
    main()
