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
windows every 50 steps); with flip x and difference also ``norms`` (the lengths of the
acceleration and rotation-rate vectors as two more channels), ``seeds3`` (three seeded encoders
side by side), ``coarseN`` (plus a MiniRocket of the series smoothed over N steps),
``hydra`` (multivariate Hydra features instead: Dempster et al. 2023's competing kernels, 8
kernels in 64 groups per dilation over the series and its difference, sparse-scaled) and
``difference+hydra`` (both feature sets side by side, each standardised).
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
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import WATCH, WINDOW, inner_folds  # noqa: E402

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


def norms(frame: pd.DataFrame) -> pd.DataFrame:
    """Two more channels: the lengths of the acceleration and rotation-rate vectors (the same
    however the watch sits on the wrist)."""
    cells = [
        np.concatenate([s, np.linalg.norm(s[:, :3], axis=1, keepdims=True),
                        np.linalg.norm(s[:, 3:], axis=1, keepdims=True)], 1)
        for s in frame["series"]
    ]  # fmt: skip
    return frame.assign(series=cells)


def rotated(frame: pd.DataFrame, copies: int, degrees: float, seed: int = 0) -> pd.DataFrame:
    """``frame`` plus ``copies`` copies of every recording, each turned by its own random
    rotation (uniform axis, angle up to ``degrees``): a watch worn a little differently turns
    acceleration and rotation rate alike."""
    rng = np.random.default_rng(seed)
    parts = [frame]
    for _ in range(copies):
        cells = []
        for s in frame["series"]:
            axis = rng.normal(size=3)
            axis /= np.linalg.norm(axis)
            angle = np.deg2rad(rng.uniform(-degrees, degrees))
            k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
            r = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
            cells.append(np.concatenate([s[:, :3] @ r.T, s[:, 3:] @ r.T], 1))
        parts.append(frame.assign(series=cells))
    return pd.concat(parts, ignore_index=True)


def gravity(frame: pd.DataFrame, steps: int = 25) -> pd.DataFrame:
    """Three more channels that do not depend on how the watch sits on the wrist: the rotation
    rate about the vertical (gravity = acceleration averaged over ``steps``), about the
    horizontal, and the size of the acceleration across gravity."""
    out = []
    kernel = np.ones(steps) / steps
    for s in frame["series"]:
        g = np.stack([np.convolve(c, kernel, mode="same") for c in s[:, :3].T], 1)
        g /= np.linalg.norm(g, axis=1, keepdims=True) + 1e-8
        w = s[:, 3:]
        vertical = (w * g).sum(1, keepdims=True)
        horizontal = np.linalg.norm(np.cross(w, g), axis=1, keepdims=True)
        linear = np.linalg.norm(s[:, :3] - g * (s[:, :3] * g).sum(1, keepdims=True), axis=1,
                                keepdims=True)  # fmt: skip
        out.append(np.concatenate([s, vertical, horizontal, linear], 1))
    return frame.assign(series=out)


def centred(frame: pd.DataFrame) -> pd.DataFrame:
    """Each recording minus its own per-channel mean (the gravity direction and gyro offset of
    how this subject wore the watch)."""
    return frame.assign(series=[s - s.mean(0, keepdims=True) for s in frame["series"]])


def coarse(frame: pd.DataFrame, factor: int) -> pd.DataFrame:
    """Each series averaged over ``factor`` steps and repeated back to its length: a second
    MiniRocket on it sees patterns ``factor`` times longer at the same dilations."""
    out = []
    for s in frame["series"]:
        kernel = np.ones(factor) / factor
        out.append(np.stack([np.convolve(c, kernel, mode="same") for c in s.T], 1))
    return frame.assign(series=out)


def features(
    train: pd.DataFrame, others: list[pd.DataFrame], **options: Any
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(features, row of each window) of ``train`` and each of ``others``; ``seeds``: the
    features of that many differently seeded encoders side by side."""
    seeds = options.pop("seeds", 1)
    if seeds > 1:
        parts = [features(train, others, **options, seed=s) for s in range(seeds)]
        return [
            (np.concatenate([p[i][0] for p in parts], 1), parts[0][i][1])
            for i in range(len(parts[0]))
        ]
    from polymodal.encoders.minirocket import MiniRocket

    window = options.pop("window", WINDOW)
    spec, windows = windowed(
        train, others, options.pop("train_stride", window // 2 or None),
        options.pop("val_stride", window // 2 or None), window or None,
        options.pop("max_length", 2700),
    )  # fmt: skip
    enc = MiniRocket(**spec, **{"num_features": 10_000, **options}).eval()
    out = []
    for t, rows in windows:
        with torch.no_grad():
            x = torch.cat([enc(t.rows(i)) for i in torch.arange(len(t)).split(256)])
        out.append((x.numpy(), rows))
    return out


def windowed(
    train: pd.DataFrame,
    others: list[pd.DataFrame],
    stride: int = 100,
    val_stride: int = 100,
    window: int | None = WINDOW,
    max_length: int = 2700,
) -> tuple[dict[str, Any], list[tuple[Any, np.ndarray]]]:
    """The series preprocessor's spec (fitted on ``train``) and the windows of ``train``
    (every ``stride`` steps) and of each of ``others`` (every ``val_stride``), each with its
    windows' rows; ``window`` None: each series whole, cropped at ``max_length``."""
    from polymodal.data.preprocess.series import SeriesPreprocessor

    fit = SeriesPreprocessor(max_length=max_length, window=window, stride=stride, reference_rows=32)
    fit.fit(train, ["series"], WATCH)
    test = SeriesPreprocessor(max_length=max_length, window=window, stride=val_stride)
    test.load_fitted_state(fit.fitted_state())
    out = []
    for frame, pre in [(train, fit)] + [(o, test) for o in others]:
        t = pre.transform(frame, ["series"], WATCH)
        out.append((t, np.arange(len(frame)) if t.row_of is None else t.row_of.numpy()))
    return fit.spec(), out


def score(train: pd.DataFrame, val: pd.DataFrame, **options: Any) -> tuple[int, int, int, int]:
    """(right windows, windows, right recordings, recordings) of ridge on ``val``."""
    (x, rows), (xv, rows_v) = features(train, [val], **options)
    return fit_score(x, rows, xv, rows_v, train, val)


def fit_score(
    x: np.ndarray, rows: np.ndarray, xv: np.ndarray, rows_v: np.ndarray,
    train: pd.DataFrame, val: pd.DataFrame,
) -> tuple[int, int, int, int]:  # fmt: skip
    """Ridge on (x, train labels of its windows' rows), scored on xv."""
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    model = RidgeClassifierCV(alphas=np.logspace(-3, 3, 10))
    model.fit(scaler.transform(x), train["label"].to_numpy()[rows])
    decision = model.decision_function(scaler.transform(xv))
    truth = val["label"].to_numpy()
    windows = int((model.classes_[decision.argmax(1)] == truth[rows_v]).sum())
    mean = pd.DataFrame(decision).groupby(rows_v).mean()
    recordings = int((model.classes_[mean.to_numpy().argmax(1)] == truth[mean.index]).sum())
    return windows, len(rows_v), recordings, len(mean)


def score_parts(train: pd.DataFrame, val: pd.DataFrame, factor: int) -> tuple[int, int, int, int]:
    """:func:`score` on the difference features of the series and of a smoothed copy."""
    (x, rows), (xv, rows_v) = features(train, [val], difference=True)
    (x2, _), (xv2, _) = features(coarse(train, factor), [coarse(val, factor)], seed=7)
    return fit_score(np.concatenate([x, x2], 1), rows, np.concatenate([xv, xv2], 1), rows_v,
                     train, val)  # fmt: skip


class Hydra:
    """Multivariate Hydra (the authors' reference code, ported): per dilation, ``groups`` groups
    of ``k`` random kernels over a random sum of channels of the series (half the groups) or its
    first difference (the other half); each step votes for the kernel with the largest response
    (its value summed) and the one with the smallest (counted)."""

    def __init__(self, length: int, channels: int, k: int = 8, groups: int = 64) -> None:
        gen = torch.Generator().manual_seed(0)
        self.k, self.h = k, groups // 2
        self.dilations = [2**i for i in range(int(np.log2((length - 1) / 8)) + 1)]
        w = torch.randn(len(self.dilations), 2, k * self.h, 1, 9, generator=gen)
        w = w - w.mean(-1, keepdim=True)
        self.w = w / w.abs().sum(-1, keepdim=True)
        per = int(np.clip(channels // 2, 2, 8))
        self.index = [torch.randint(0, channels, (2, self.h, per), generator=gen)
                      for _ in self.dilations]  # fmt: skip

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # (n, C, T) -> (n, features)
        n, out = x.shape[0], []
        for i, d in enumerate(self.dilations):
            for j, source in enumerate((x, torch.diff(x))):
                z = F.conv1d(source[:, self.index[i][j]].sum(2), self.w[i, j], dilation=d,
                             padding=4 * d, groups=self.h).view(n, self.h, self.k, -1)  # fmt: skip
                top, top_at = z.max(2)
                low_at = z.min(2).indices
                out.append(torch.zeros(n, self.h, self.k).scatter_add_(-1, top_at, top))
                out.append(torch.zeros(n, self.h, self.k).scatter_add_(
                    -1, low_at, torch.ones_like(top)))  # fmt: skip
        return torch.cat(out, 1).view(n, -1)


def hydra_features(
    train: pd.DataFrame, others: list[pd.DataFrame]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(Hydra features, row of each window) of the standardised windows, sparse-scaled as the
    authors do (square root, then standardised with the zeros kept at zero), statistics from
    ``train``."""
    hydra, raw, rows = Hydra(WINDOW, 6), [], []
    for t, r in windowed(train, others)[1]:
        with torch.no_grad():
            parts = [hydra(t.rows(i)[..., :-1].transpose(1, 2).float())
                     for i in torch.arange(len(t)).split(256)]  # fmt: skip
        raw.append(torch.cat(parts).clamp(min=0).sqrt())
        rows.append(r)
    mean, std = raw[0].mean(0), raw[0].std(0) + 1e-8
    return [((((x - mean) / std) * (x != 0)).numpy(), r) for x, r in zip(raw, rows, strict=True)]


def score_hydra(train: pd.DataFrame, val: pd.DataFrame, both: bool) -> tuple[int, int, int, int]:
    """Ridge on Hydra features, or (``both``) on them beside MiniRocket's difference features."""
    (h, rows), (hv, rows_v) = hydra_features(train, [val])
    if not both:
        return fit_score(h, rows, hv, rows_v, train, val)
    (x, _), (xv, _) = features(train, [val], difference=True)  # the same windows, in order
    mean, std = x.mean(0), x.std(0) + 1e-8
    x, xv = np.concatenate([(x - mean) / std, h], 1), np.concatenate([(xv - mean) / std, hv], 1)
    return fit_score(x, rows, xv, rows_v, train, val)


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
        "seeds3": {"difference": True, "seeds": 3},
    }
    if name in ("hydra", "difference+hydra"):
        return score_hydra(flipped(train, x_flip), flipped(val, x_flip), name != "hydra")
    if name.startswith("rotate"):  # rotateK:D, K copies turned up to D degrees
        k, d = name[6:].split(":")
        train = rotated(flipped(train, x_flip), int(k), float(d))
        return score(train, flipped(val, x_flip), difference=True)
    if name == "gravity":
        return score(gravity(flipped(train, x_flip)), gravity(flipped(val, x_flip)),
                     difference=True)  # fmt: skip
    if name == "centred":
        return score(centred(flipped(train, x_flip)), centred(flipped(val, x_flip)),
                     difference=True)  # fmt: skip
    if name.startswith("window"):  # windowN (0: whole series cropped at 1,024 steps)
        w = int(name[6:])
        options = {"window": w} if w else {"window": 0, "max_length": 1024}
        return score(flipped(train, x_flip), flipped(val, x_flip), difference=True, **options)
    if name == "predict50":
        return score(flipped(train, x_flip), flipped(val, x_flip), difference=True, val_stride=50)
    if name == "norms":
        return score(norms(flipped(train, x_flip)), norms(flipped(val, x_flip)), difference=True)
    if name.startswith("coarse"):  # the difference features plus those of a smoothed copy
        f = int(name[6:])
        return score_parts(flipped(train, x_flip), flipped(val, x_flip), f)
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
        for train, val in inner_folds(frame):
            total += variant(name, train, val)
        print(f"| {name} | {total[0] / total[1]:.3f} | {total[2] / total[3]:.3f} | "
              f"{time.perf_counter() - t0:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
