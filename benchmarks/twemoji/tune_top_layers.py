"""Validation only: the retrieval model (towers only: the anchor space needs frozen encoders)
with the top block(s) of one pretrained encoder fine-tuned at a small learning rate, against the
same model with both encoders frozen; prints the validation R@k and the fit's seconds as JSON.

    python benchmarks/twemoji/tune_top_layers.py LAYERS PRETRAINED_LR SEED [--side image]
        [--epochs N] [--no-cache]

LAYERS 0: both frozen. ``--side text`` (default): MiniLM's top layers (``train_top_layers``);
``image``: EfficientNet-Lite0's top blocks (``train_top_blocks``; the frozen trunk's maps are
cached, or not with ``--no-cache``, which times the uncached path).
"""

import argparse
import json
import time

import torch
from common import DATA, IMAGE, TEXT, load_splits, retrieval_config
from run import RETRIEVAL_HEAD, directions

from polymodal import Predictor

torch.set_num_threads(1)
ap = argparse.ArgumentParser()
ap.add_argument("layers", type=int)
ap.add_argument("plr", type=float)
ap.add_argument("seed", type=int)
ap.add_argument("--side", choices=["text", "image"], default="text")
ap.add_argument("--epochs", type=int, default=10)
ap.add_argument("--no-cache", action="store_true")
args = ap.parse_args()
layers, plr, seed, side = args.layers, args.plr, args.seed, args.side
fr = load_splits()
cfg = retrieval_config(args.epochs, None, {**RETRIEVAL_HEAD, "anchors": 0})  # default cache dir
cfg["trainer"].update(seed=seed, feature_cache=not args.no_cache)
if layers and side == "text":
    cfg["inputs"][1] = {**TEXT, "encoder": {**TEXT["encoder"], "train_top_layers": layers}}
elif layers:
    cfg["inputs"][0] = {**IMAGE, "encoder": {**IMAGE["encoder"], "train_top_blocks": layers}}
if layers:
    cfg["trainer"]["pretrained_lr"] = plr
t0 = time.time()
pred = Predictor(cfg).fit(fr["train_alt"], val=fr["val"], base_dir=DATA)
v = directions(pred.metrics_["val"]["match"])
print(json.dumps({"side": side, "layers": layers, "plr": plr, "seed": seed, "val": v,
                  "epochs": args.epochs, "cache": not args.no_cache,
                  "s": round(time.time() - t0)}), flush=True)  # fmt: skip
