"""Validation only: the benchmark's retrieval model (RETRIEVAL_HEAD, 10 epochs) through
``Predictor.fit`` with and without image augmentation served from the frozen-feature cache
(``views``), scored by R@1 / R@10 both ways on the validation emoji and on the validation icons
restyled like the test ones (``restyle.py``'s grey and outline). The test split is never read.

    python benchmarks/twemoji/augment_views.py VIEWS [SEED]    # VIEWS 0: no augmentation
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import restyle as R  # noqa: E402
from common import DATA, IMAGE, load_splits, retrieval_config  # noqa: E402
from run import RETRIEVAL_HEAD, directions  # noqa: E402

from polymodal import Predictor  # noqa: E402

# crop / rotation / colour, no flip (arrows and hands have a side); the row itself is one view
AUGMENT = {"augment": True, "flip": False, "crop_scale_min": 0.6, "rotation_degrees": 15.0,
           "color_jitter": 0.3, "grayscale": 0.2}  # fmt: skip


def main() -> None:
    views, seed = int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0
    torch.set_num_threads(2)
    frames = load_splits()
    cfg = retrieval_config(10, None, RETRIEVAL_HEAD)  # the default cache folder
    cfg["trainer"]["seed"] = seed
    if views:
        cfg["inputs"][0] = {**IMAGE, "preprocessing": {**AUGMENT, "views": views}}
    t0 = time.time()
    pred = Predictor(cfg).fit(frames["train_alt"], val=frames["val"], base_dir=DATA)
    out: dict[str, object] = {"views": views, "seed": seed, "fit_s": round(time.time() - t0)}
    out["val"] = directions(pred.metrics_["val"]["match"])
    with tempfile.TemporaryDirectory() as tmp:
        for style in R.STYLES:
            frame = R.restyle(frames["val"], DATA, Path(tmp), style)
            out[style] = directions(pred.evaluate(frame, base_dir=Path(tmp))["match"])
    keep = ("text_to_image_R@1", "text_to_image_R@10", "image_to_text_R@1", "image_to_text_R@10")
    print(json.dumps({k: {m: round(v[m], 3) for m in keep} if isinstance(v, dict) else v
                      for k, v in out.items()}))  # fmt: skip


if __name__ == "__main__":
    main()
