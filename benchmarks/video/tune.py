"""Settings check on validation rows only (never the test table): fit Moving AV-MNIST methods on a
subset of the training clips and print, per epoch, the validation accuracies and the epoch's
seconds. What README.md's "How settings were chosen" reports came from this script.

    python benchmarks/video/tune.py --rows 2000 --epochs 3 --methods frames_diff,frames_gru
    python benchmarks/video/tune.py --arrow --epochs 20 --methods frames_diff,r21d

``--arrow``: one arrow-of-time fold (vtest held out and never scored, bigbuckbunny validates),
no augmentation, no early stopping: does the training loss fall, does validation follow?
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
import arrow  # noqa: E402
from common import SHARED, arrow_config, avmnist_config  # noqa: E402
from run import SETTINGS, fit, moving_avmnist  # noqa: E402


def arrow_fold(args: argparse.Namespace) -> None:
    base = args.data / "arrow_of_time"
    frame = arrow.build(SHARED / "video", base)
    held_out, val_group = arrow.folds(frame)[-1]
    train = frame[~frame["group"].isin([held_out, val_group])]
    val = frame[frame["group"] == val_group]
    for method in args.methods.split(","):
        cfg = arrow_config(method, args.epochs)
        cfg["trainer"] |= {"early_stopping_patience": None, "lr": 0.001}
        cfg["inputs"][0]["preprocessing"]["augment"] = False
        pred = fit(cfg, train, val, base)
        for h in pred.artifact_.history:
            print(json.dumps({"method": method, "epoch": h["epoch"],
                              "train_loss": round(h["train_loss"], 4),
                              "val_accuracy": round(h["val"]["arrow"]["accuracy"], 3)}), flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/tmp/polymodal_video_bench"))
    ap.add_argument("--rows", type=int, default=2000, help="training clips used")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--methods", default="frames_diff,frames_gru")
    ap.add_argument("--set", action="append", default=[], help="trainer key=value (JSON value)")
    ap.add_argument("--arrow", action="store_true", help="one arrow-of-time fold instead")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.arrow:
        arrow_fold(args)
        return
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
