"""Inner validation folds on watch, for choices made before the test folds are scored: within
each outer fold's six training subjects, three inner folds of two validation subjects (four
train); MiniRocket (10,000 features, polymodal's encoder) + scikit-learn ridge on windows of 200
steps, stride 100; window accuracy and recording accuracy (mean decision over the recording's
windows), pooled over the 12 inner folds. The outer folds' test subjects are never read.

    python benchmarks/timeseries/inner.py            # every variant
    python benchmarks/timeseries/inner.py flip:-1,1,1 difference

Variants: ``plain``; ``flip:dx,dy,dz`` (left-wrist recordings transformed by the axis sign flip
diag(d): acceleration times d, rotation rates times det(d) d, i.e. a reflection when det = -1;
the 7 flips other than the identity); ``augment`` (signal only: every training recording also
seen mirrored through x, so that the model need not know the side); ``difference`` (flip x,
plus MiniRocket's ``difference`` features); ``features20k`` (flip x, 20,000 features instead:
is it the difference or just more features?); ``stride50`` (flip x and difference, training
windows every 50 steps).
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import FOLDS, WATCH, WINDOW  # noqa: E402

SIGNS = [d for d in itertools.product((1, -1), repeat=3) if d != (1, 1, 1)]


def flip(values: np.ndarray, d: tuple[int, ...]) -> np.ndarray:
    """(T, 6) ax..az, wx..wz under the axis sign flip diag(d) (rotation rates are
    pseudo-vectors: they also take the determinant's sign)."""
    d_ = np.asarray(d, dtype=np.float64)
    out = values.copy()
    out[:, :3] *= d_
    out[:, 3:] *= np.prod(d_) * d_
    return out


def table() -> pd.DataFrame:
    frame = pd.read_parquet(WATCH / "recordings.parquet")
    frame["series"] = [np.stack(s).astype(np.float64) for s in frame["signal"]]
    return frame.rename(columns={"exercise": "label"})[["subject", "side", "series", "label"]]


def flipped(frame: pd.DataFrame, d: tuple[int, ...] | None, every: bool = False) -> pd.DataFrame:
    """Left-wrist rows (or, with ``every``, all rows) under flip ``d``."""
    if d is None:
        return frame
    left = every | (frame["side"] == "left")
    cells = [flip(s, d) if f else s for s, f in zip(frame["series"], left, strict=True)]
    return frame.assign(series=cells)


def features(
    train: pd.DataFrame, others: list[pd.DataFrame], **options: Any
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(features, row of each window) of ``train`` and each of ``others``."""
    from polymodal.data.preprocess.series import SeriesPreprocessor
    from polymodal.encoders.minirocket import MiniRocket

    stride = options.pop("train_stride", 100)
    fit = SeriesPreprocessor(max_length=2700, window=WINDOW, stride=stride, reference_rows=32)
    fit.fit(train, ["series"], WATCH)
    test = SeriesPreprocessor(max_length=2700, window=WINDOW, stride=100)
    test.load_fitted_state(fit.fitted_state())
    enc = MiniRocket(**fit.spec(), **{"num_features": 10_000, **options}).eval()
    out = []
    for frame, pre in [(train, fit)] + [(o, test) for o in others]:
        t = pre.transform(frame, ["series"], WATCH)
        assert t.row_of is not None
        with torch.no_grad():
            x = torch.cat([enc(t.rows(i)) for i in torch.arange(len(t)).split(256)])
        out.append((x.numpy(), t.row_of.numpy()))
    return out


def score(train: pd.DataFrame, val: pd.DataFrame, **options: Any) -> tuple[int, int, int, int]:
    """(right windows, windows, right recordings, recordings) of ridge on ``val``."""
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.preprocessing import StandardScaler

    (x, rows), (xv, rows_v) = features(train, [val], **options)
    scaler = StandardScaler().fit(x)
    model = RidgeClassifierCV(alphas=np.logspace(-3, 3, 10))
    model.fit(scaler.transform(x), train["label"].to_numpy()[rows])
    decision = model.decision_function(scaler.transform(xv))
    truth = val["label"].to_numpy()
    windows = int((model.classes_[decision.argmax(1)] == truth[rows_v]).sum())
    mean = pd.DataFrame(decision).groupby(rows_v).mean()
    recordings = int((model.classes_[mean.to_numpy().argmax(1)] == truth[mean.index]).sum())
    return windows, len(rows_v), recordings, len(mean)


def variant(name: str, train: pd.DataFrame, val: pd.DataFrame) -> tuple[int, int, int, int]:
    x_flip = (-1, 1, 1)
    if name == "plain":
        return score(train, val)
    if name.startswith("flip:"):
        d = tuple(int(v) for v in name[5:].split(","))
        return score(flipped(train, d), flipped(val, d))
    if name == "augment":  # no side known: both images of every training recording
        both = pd.concat([train, flipped(train, x_flip, every=True)], ignore_index=True)
        return score(both, val)
    settings: dict[str, dict[str, Any]] = {
        "difference": {"difference": True},
        "features20k": {"num_features": 20_000},
        "stride50": {"difference": True, "train_stride": 50},
    }
    options = dict(settings[name])
    return score(flipped(train, x_flip), flipped(val, x_flip), **options)


def main() -> None:
    names = sys.argv[1:] or (
        ["plain"] + [f"flip:{','.join(map(str, d))}" for d in SIGNS]
        + ["augment", "difference", "features20k", "stride50"]
    )  # fmt: skip
    torch.set_num_threads(2)
    frame = table()
    print("| variant | window accuracy | recording accuracy | seconds |\n|---|---|---|---|")
    for name in names:
        t0 = time.perf_counter()
        total = np.zeros(4, dtype=np.int64)
        for fold in range(len(FOLDS)):
            subjects = sorted(set(frame["subject"]) - set(FOLDS[fold]))
            for k in range(3):
                held = subjects[2 * k : 2 * k + 2]
                train = frame[frame["subject"].isin(subjects) & ~frame["subject"].isin(held)]
                val = frame[frame["subject"].isin(held)]
                total += variant(name, train.reset_index(drop=True), val.reset_index(drop=True))
        print(f"| {name} | {total[0] / total[1]:.3f} | {total[2] / total[3]:.3f} | "
              f"{time.perf_counter() - t0:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
