"""Validation-only tuning for the time-series benchmark: fit one encoder's config (with
overrides) on the training part and score the validation part; the test part is never read.

- watch: for each fold asked, 5 training subjects fit and the fold's validation subject scores
  (the same split run.py uses; the fold's 2 test subjects are dropped before anything is fitted).
- UEA: 80% of the official training rows fit, the other 20% (stratified, seed 0) score.

    python benchmarks/timeseries/tune.py JapaneseVowels series_cnn \
        '{"trainer": {"lr": 0.005}, "encoder": {"norm": "group"}}'
    python benchmarks/timeseries/tune.py watch patchtst '{}' --folds 0,1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import UEA, WATCH, WINDOW, config  # noqa: E402
from run import UEA_LENGTH, WATCH_LENGTH, uea_parts, watch_parts  # noqa: E402


def overridden(cfg: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` keys trainer / encoder / preprocessing / head merged into the config."""
    signal = cfg["inputs"][0]
    signal["encoder"] |= extra.get("encoder", {})
    signal["preprocessing"] |= extra.get("preprocessing", {})
    cfg["trainer"] |= extra.get("trainer", {})
    cfg["outputs"][0]["head"] |= extra.get("head", {})
    return cfg


def score(cfg: dict[str, Any], train: pd.DataFrame, val: pd.DataFrame, base: Path) -> str:
    from polymodal.api import Predictor

    torch.manual_seed(0)
    t0 = time.perf_counter()
    pred = Predictor(cfg).fit(train, val=val, base_dir=base)
    seconds = time.perf_counter() - t0
    report = pred.evaluate(val, base_dir=base)["label"]
    window = report.get("window_accuracy", report["accuracy"])
    return f"val acc {report['accuracy']:.3f} window acc {window:.3f} ({seconds:.0f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("encoder")
    parser.add_argument("overrides", nargs="?", default="{}")
    parser.add_argument("--folds", default="0")
    parser.add_argument("--side", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    extra = json.loads(args.overrides)
    if args.dataset == "watch":
        frame = pd.read_csv(WATCH / "recordings.csv").rename(
            columns={"signal": "series", "exercise": "label"}
        )
        for fold in map(int, args.folds.split(",")):
            train, val, _ = watch_parts(frame, fold)
            cfg = config(args.encoder, WATCH_LENGTH, False, window=WINDOW, side=args.side)
            print(f"watch fold {fold} {args.encoder} {args.overrides}: "
                  f"{score(overridden(cfg, extra), train, val, WATCH)}", flush=True)  # fmt: skip
    else:
        fit, val = uea_parts(args.dataset)
        cfg = config(args.encoder, UEA_LENGTH[args.dataset], False)
        print(f"{args.dataset} {args.encoder} {args.overrides}: "
              f"{score(overridden(cfg, extra), fit, val, UEA / args.dataset)}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
