"""Validation only: the retrieval model (towers only: the anchor space needs a frozen text
encoder) with the top MiniLM block(s) fine-tuned at a small learning rate, against the same
model with MiniLM frozen; prints the validation R@k as JSON.

    python benchmarks/twemoji/tune_top_layers.py LAYERS PRETRAINED_LR SEED   # LAYERS 0: frozen
"""

import json
import sys
import time
from pathlib import Path

import torch
from common import DATA, TEXT, load_splits, retrieval_config
from run import RETRIEVAL_HEAD, directions

from polymodal import Predictor

torch.set_num_threads(1)
layers, plr, seed = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
cache = str(Path.home() / ".cache/polymodal/features")
fr = load_splits()
cfg = retrieval_config(10, cache, {**RETRIEVAL_HEAD, "anchors": 0})
cfg["trainer"]["seed"] = seed
if layers:
    cfg["inputs"][1] = {**TEXT, "encoder": {**TEXT["encoder"], "train_top_layers": layers}}
    cfg["trainer"]["pretrained_lr"] = plr
t0 = time.time()
pred = Predictor(cfg).fit(fr["train_alt"], val=fr["val"], base_dir=DATA)
v = directions(pred.metrics_["val"]["match"])
print(json.dumps({"layers": layers, "plr": plr, "seed": seed, "val": v,
                  "s": round(time.time() - t0)}), flush=True)  # fmt: skip
