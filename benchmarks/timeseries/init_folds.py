"""What `polymodal init --preset best` gives a newcomer on the watch table, scored on unseen
subjects: the inner validation folds of inner.py (within each outer fold's six training subjects,
three folds of two held-out subjects; the outer test subjects are never read), each fitted with
``Predictor.fit`` on the training subjects' rows (the trainer holds out its own validation rows,
as the CLI does) and scored by recording accuracy on the held-out subjects.

    python benchmarks/timeseries/init_folds.py windowed cropped ridge

Variants: ``windowed`` (init's config: 256-step windows every 128), ``cropped`` (the same with
the series cropped at 1,024 steps, as init did before), ``ridge`` (windowed, heads solved in
closed form although the tabular inputs could train). Prints each variant's accuracy and paired
bootstrap intervals of the differences from the first.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import WATCH, inner_folds  # noqa: E402

from polymodal import Predictor  # noqa: E402
from polymodal.data.presets import starter  # noqa: E402


def variant_config(base: dict[str, Any], name: str) -> dict[str, Any]:
    cfg = copy.deepcopy(base)
    series = next(i for i in cfg["inputs"] if i["type"] == "timeseries")
    if name == "cropped":
        series["preprocessing"] = {"max_length": 1024}
    if name == "ridge":
        cfg["trainer"] |= {"head_solver": "ridge", "epochs": 0}
    return cfg


def hits(frame: pd.DataFrame, cfg: dict[str, Any]) -> np.ndarray:
    """Right (1) / wrong (0) per held-out recording, over the 12 inner folds in order."""
    out = []
    for train, val in inner_folds(frame):
        pred = Predictor(copy.deepcopy(cfg)).fit(train, base_dir=WATCH)
        got = pred.predict(val, base_dir=WATCH)["exercise"].to_numpy()
        out.append(got == val["exercise"].to_numpy())
    return np.concatenate(out).astype(float)


def main() -> None:
    names = sys.argv[1:] or ["windowed", "cropped", "ridge"]
    torch.set_num_threads(2)
    frame = pd.read_csv(WATCH / "recordings.csv")
    base = starter(frame, "exercise", WATCH, "best").config
    base["trainer"]["progress"] = False
    results = {n: hits(frame, variant_config(base, n)) for n in names}
    rng = np.random.default_rng(0)
    first = results[names[0]]
    idx = rng.integers(0, len(first), (5000, len(first)))
    for name, h in results.items():
        line = f"{name}: recording accuracy {h.mean():.3f} ({len(h)} recordings)"
        if name != names[0]:
            diff = (first[idx] - h[idx]).mean(1)
            low, high = np.percentile(diff, [2.5, 97.5])
            line += (
                f"; {names[0]} - {name} {first.mean() - h.mean():+.3f} [{low:+.3f}, {high:+.3f}]"
            )
        print(line, flush=True)


if __name__ == "__main__":
    main()
