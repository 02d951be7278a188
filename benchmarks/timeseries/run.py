"""Time-series benchmark (issue 19): every series encoder alone, the best one fused with a
tabular column, and a MiniRocket + scikit-learn ridge reference on the same features, trained
and scored through polymodal's public API.

- watch: 112 smartwatch recordings of 8 subjects; 4 folds of 2 test subjects (never trained on).
  Of the other 6 one validates (early stopping, choosing the encoder to fuse): the
  gradient-trained encoders fit on 5; the ridge ones (MiniRocket, the reference) are scored on
  that subject after a fit on 5, then fit again on all 6 for the test (their penalty comes from
  leave-one-out, no held-out rows needed; the issue's reference trained on 6). Windows of 200
  steps, stride 100; window accuracy and recording accuracy (a recording's windows averaged).
- uea: JapaneseVowels and SelfRegulationSCP1, official train / test splits; gradient-trained
  encoders early-stop on 20% of the training rows; MiniRocket (ridge, leave-one-out) uses all.

    python benchmarks/timeseries/run.py            # full run: results.json / results.md here
    python benchmarks/timeseries/run.py --quick    # 2 folds, 2 epochs, 2,016 MiniRocket features
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import ENCODERS, FOLDS, RIDGE, UEA, WATCH, WINDOW, config  # noqa: E402
from report import summarise, write  # noqa: E402

WATCH_LENGTH = 2700  # longest recording: 2,618 steps (all of it is windowed)
UEA_LENGTH = {"JapaneseVowels": 32, "SelfRegulationSCP1": 896}
COST = ("minirocket", "minirocket_diff", "patchtst", "series_cnn", "series_gru")  # cheapest first


class Outcome(dict):  # type: ignore[type-arg]
    """One method on one test part: per-row and per-window correctness, speed, val scores."""


def correctness(pred: Any, frame: pd.DataFrame, base: Path) -> Outcome:
    """Test rows and windows right or wrong, and end-to-end inference speed."""
    from polymodal.evaluation.evaluate import predict_logits

    t0 = time.perf_counter()
    rows = pred.predict(frame, base_dir=base)
    seconds = time.perf_counter() - t0
    art = pred.artifact_
    ds = art.pipeline.dataset(frame, base, "test")
    logits = predict_logits(art.model, ds)["label"]
    right = (logits.argmax(-1) == ds.targets["label"]).numpy()
    row_of = ds.row_of.numpy() if ds.row_of is not None else np.arange(len(frame))
    return Outcome(
        rows=(rows["label"].astype(str).to_numpy() == frame["label"].astype(str).to_numpy()),
        windows=right, window_row=row_of, infer_rows_per_s=len(frame) / seconds,
        infer_windows_per_s=len(ds) / seconds,
    )  # fmt: skip


def fit_score(
    cfg: dict[str, Any], train: pd.DataFrame, val: pd.DataFrame | None, test: pd.DataFrame,
    base: Path,
) -> Outcome:  # fmt: skip
    """Fit through the Predictor (wall time, preprocessing and validation included), score
    the test part and the validation part."""
    from polymodal.api import Predictor

    if val is None:  # every training row trains (no split held out)
        cfg = {**cfg, "data": {"val_fraction": 0.0, "test_fraction": 0.0}}
    torch.manual_seed(0)
    t0 = time.perf_counter()
    pred = Predictor(cfg).fit(train, val=val, base_dir=base)
    seconds = time.perf_counter() - t0
    out = correctness(pred, test, base)
    out["train_seconds"] = seconds
    if val is not None:
        report = pred.evaluate(val, base_dir=base)["label"]
        out["val"] = {"accuracy": report["accuracy"],
                      "window_accuracy": report.get("window_accuracy", report["accuracy"])}  # fmt: skip
    return out


def fit_ridge(
    cfg: dict[str, Any], train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame, base: Path
) -> Outcome:
    """A closed-form (ridge) config: its validation score from a fit on ``train`` alone, then
    the test outcome of a fit on ``train`` and ``val`` together (train_seconds: that fit)."""
    held = fit_score(cfg, train, val, val, base)
    out = fit_score(cfg, pd.concat([train, val]), None, test, base)
    out["val"] = held["val"]
    return out


def reference(
    train: pd.DataFrame, test: pd.DataFrame, base: Path, length: int, window: int | None,
    side: bool, quick: bool,
) -> Outcome:  # fmt: skip
    """MiniRocket features from polymodal's encoder (fitted on ``train``), then scikit-learn's
    StandardScaler + RidgeClassifierCV (alphas 10^-3..10^3, its usual grid) on the windows; a
    recording's label is the majority of its windows' (ties: the first in label order)."""
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.preprocessing import StandardScaler

    from polymodal.data.preprocess.series import SeriesPreprocessor
    from polymodal.encoders.minirocket import MiniRocket

    t0 = time.perf_counter()
    options: dict[str, Any] = {"max_length": length, "reference_rows": 32}
    if window:
        options |= {"window": window, "stride": 100}
    pre = SeriesPreprocessor(**options).fit(train, ["series"], base)
    enc = MiniRocket(**pre.spec(), num_features=2016 if quick else 10_000).eval()

    def features(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        t = pre.transform(frame, ["series"], base)
        row_of = t.row_of if t.row_of is not None else torch.arange(len(frame))
        with torch.no_grad():
            x = torch.cat([enc(t.rows(i)) for i in torch.arange(len(t)).split(256)]).numpy()
        if side:
            x = np.hstack([x, (frame["side"].to_numpy()[row_of.numpy()] == "left")[:, None]])
        return x, row_of.numpy()

    (x, rows), labels = features(train), train["label"].astype(str).to_numpy()
    scaler = StandardScaler().fit(x)
    model = RidgeClassifierCV(alphas=np.logspace(-3, 3, 10)).fit(scaler.transform(x), labels[rows])
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    (xt, rows_t), truth = features(test), test["label"].astype(str).to_numpy()
    window_pred = model.predict(scaler.transform(xt))
    votes = pd.crosstab(rows_t, window_pred).reindex(columns=model.classes_, fill_value=0)
    row_pred = votes.to_numpy().argmax(1)
    infer = time.perf_counter() - t0
    return Outcome(
        rows=model.classes_[row_pred] == truth, windows=window_pred == truth[rows_t],
        window_row=rows_t, train_seconds=seconds, infer_rows_per_s=len(test) / infer,
        infer_windows_per_s=len(xt) / infer,
    )  # fmt: skip


def watch_parts(frame: pd.DataFrame, fold: int) -> tuple[pd.DataFrame, ...]:
    """(train, val, test) of a fold: test subjects from FOLDS, the next subject validates."""
    test_subjects = FOLDS[fold]
    rest = sorted(set(frame["subject"]) - set(test_subjects))
    val_subject = rest[(2 * fold) % len(rest)]
    test = frame[frame["subject"].isin(test_subjects)]
    val = frame[frame["subject"] == val_subject]
    train = frame[~frame["subject"].isin([*test_subjects, val_subject])]
    return train, val, test


def run_watch(args: argparse.Namespace, save: Any) -> dict[str, list[Outcome]]:
    """Every method on every fold; per fold, the encoder with the best validation score (the
    held-out training subject: recording accuracy, then window accuracy) is ``selected`` and
    trained again with the ``side`` column (``selected+side``). ``save(results, done, total)``
    runs after each fold, so a stopped run still leaves its finished folds."""
    frame = pd.read_csv(WATCH / "recordings.csv").rename(
        columns={"signal": "series", "exercise": "label"}
    )
    folds = [int(f) for f in args.folds.split(",")] if args.folds else range(len(FOLDS))
    folds = folds[:2] if args.quick else folds
    results: dict[str, list[Outcome]] = {}
    for fold in folds:
        train, val, test = watch_parts(frame, fold)
        for name in sorted(ENCODERS, key=COST.index):
            results.setdefault(name, []).append(watch_fit(name, False, train, val, test, args))
            log(f"watch fold {fold} {name}", results[name][-1])
        for name in RIDGE:  # fused with side, left wrists mirrored
            out = watch_fit(name, True, train, val, test, args)
            results.setdefault(f"{name}+side", []).append(out)
            log(f"watch fold {fold} {name}+side", out)
        fused = results["minirocket_diff+side"][-1]
        for side in (False, True):
            key = "minirocket_sklearn_ridge" + ("+side" if side else "")
            both = pd.concat([train, val])  # six subjects, as the reference
            out = reference(both, test, WATCH, WATCH_LENGTH, WINDOW, side, args.quick)
            results.setdefault(key, []).append(out)
            log(f"watch fold {fold} {key}", out)
        best = max(ENCODERS, key=lambda n: validation(results[n][-1]))
        results.setdefault("selected", []).append(Outcome(results[best][-1], chosen=best))
        if best == "minirocket_diff":  # the very same config, already fitted
            out = Outcome(fused, chosen=best)
        else:
            out = Outcome(watch_fit(best, True, train, val, test, args), chosen=best)
        results.setdefault("selected+side", []).append(out)
        log(f"watch fold {fold} selected+side ({best})", out)
        for outs in results.values():
            outs[-1]["fold"] = fold
        save(results, len(results["selected"]), len(folds))
    return results


def watch_fit(
    name: str, side: bool, train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame,
    args: argparse.Namespace,
) -> Outcome:  # fmt: skip
    """One encoder (with ``side``: fused with it, left wrists mirrored) on one watch fold."""
    cfg = config(name, WATCH_LENGTH, args.quick, window=WINDOW, side=side)
    if name in RIDGE:
        return fit_ridge(cfg, train, val, test, WATCH)
    return fit_score(cfg, train, val, test, WATCH)


def validation(out: Outcome) -> tuple[float, float]:
    """Validation (recording accuracy, window accuracy) of one fold."""
    return out["val"]["accuracy"], out["val"]["window_accuracy"]


def uea_parts(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fit, val) of the official training rows: 20% of each class validates (seed 0)."""
    train = pd.read_parquet(UEA / name / "train.parquet")
    val = train.groupby("label", group_keys=False).sample(frac=0.2, random_state=0)
    return train.drop(val.index), val


def run_uea(args: argparse.Namespace, name: str) -> dict[str, list[Outcome]]:
    train = pd.read_parquet(UEA / name / "train.parquet")
    test = pd.read_parquet(UEA / name / "test.parquet")
    fit, val = uea_parts(name)
    length = UEA_LENGTH[name]
    results: dict[str, list[Outcome]] = {}
    for enc in ENCODERS:
        cfg = config(enc, length, args.quick)
        part, held = (train, None) if enc in RIDGE else (fit, val)
        results[enc] = [fit_score(cfg, part, held, test, UEA / name)]
        log(f"{name} {enc}", results[enc][-1])
    out = reference(train, test, UEA / name, length, None, False, args.quick)
    results["minirocket_sklearn_ridge"] = [out]
    log(f"{name} minirocket_sklearn_ridge", out)
    return results


def minirocket_speed(quick: bool) -> list[dict[str, Any]]:
    """MiniRocket's transform alone on every 6 x 200 watch window (stride 100), 10,000
    features (and with ``difference``: 10,000 more), batches of 256 (the issue's target: >= 1,000
    windows/s on 2 cores). Two figures: wall-clock windows/s on 2 threads (median of 3 passes;
    on a shared, busy machine this is what the other jobs left over), and the CPU time per
    window on 1 thread (min of 3 batches), which load disturbs much less: 2 / that is the rate
    2 free cores give if they scale."""
    from polymodal.data.preprocess.series import SeriesPreprocessor
    from polymodal.encoders.minirocket import MiniRocket

    cells = []
    for signal in pd.read_parquet(WATCH / "recordings.parquet")["signal"]:
        steps = np.stack(signal)
        cells += [steps[s : s + WINDOW] for s in range(0, len(steps) - WINDOW + 1, 100)]
    table = pd.DataFrame({"series": cells})
    pre = SeriesPreprocessor(max_length=WINDOW, reference_rows=32).fit(table, ["series"], WATCH)
    x = pre.transform(table, ["series"], WATCH).rows(torch.arange(len(table)))
    rows = []
    for difference in (False, True):
        enc = MiniRocket(
            **pre.spec(), num_features=2016 if quick else 10_000, difference=difference
        ).eval()
        wall_rate, cpu = transform_speed(enc, x)
        method = "minirocket_diff" if difference else "minirocket"
        print(f"{method} transform: {wall_rate:.0f} windows/s wall on 2 threads, "
              f"{cpu * 1e3:.2f} ms CPU per window", flush=True)  # fmt: skip
        base = {"dataset": "watch", "method": method, "train_seconds": None,
                "windows": len(x), "features": enc.out_dim}  # fmt: skip
        rows += [{**base, "metric": "transform_windows_per_s_wall_2_threads",
                  "value": round(wall_rate, 1)},
                 {**base, "metric": "transform_windows_per_s_2_cores_from_cpu_time",
                  "value": round(2 / cpu, 1), "cpu_ms_per_window": round(cpu * 1e3, 3)}]  # fmt: skip
    return rows


def transform_speed(enc: torch.nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """(windows/s wall on 2 threads, CPU seconds per window on 1 thread) of ``enc`` on ``x``."""
    threads = torch.get_num_threads()
    walls, cpu = [], []
    with torch.no_grad():
        torch.set_num_threads(2)
        enc(x[:256])  # warm-up
        for _ in range(3):
            t0 = time.perf_counter()
            for batch in x.split(256):
                enc(batch)
            walls.append(time.perf_counter() - t0)
        torch.set_num_threads(1)
        for _ in range(3):
            t0 = time.process_time()
            enc(x[:256])
            cpu.append((time.process_time() - t0) / 256)
    torch.set_num_threads(threads)
    return len(x) / float(np.median(walls)), min(cpu)


def log(what: str, out: Outcome) -> None:
    print(f"{what}: recording acc {out['rows'].mean():.3f}, window acc "
          f"{out['windows'].mean():.3f}, {out['train_seconds']:.1f} s", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 folds, 2 epochs, small MiniRocket")
    parser.add_argument("--datasets", default="JapaneseVowels,watch,SelfRegulationSCP1")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for training and inference (1: steady on a shared "
                        "machine); the MiniRocket transform speed is always timed on 2")  # fmt: skip
    parser.add_argument("--stem", help="output file stem (default: results, results_quick)")
    parser.add_argument("--folds", help="watch folds to run, e.g. 2,3 (default: all 4)")
    parser.add_argument("--no-speed", action="store_true", help="skip the MiniRocket timing")
    parser.add_argument("--speed-only", action="store_true",
                        help="only the MiniRocket timing (on a quiet machine; merge with report.py)")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    command = "python " + " ".join(["benchmarks/timeseries/run.py", *sys.argv[1:]])
    stem = args.stem or ("results_quick" if args.quick else "results")
    names = args.datasets.split(",")
    done: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []  # finished datasets

    def save(current: tuple[list[Any], list[Any]] | None, unfinished: str | None) -> None:
        """results.json / .md from the finished datasets (and the current one's folds)."""
        parts = done + ([current] if current else [])
        doc = {"command": command, "date": dt.date.today().isoformat(), "threads": args.threads,
               "rows": [r for rows, _ in parts for r in rows],
               "comparisons": [c for _, comps in parts for c in comps],
               "total_seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
        if unfinished:
            doc["unfinished"] = unfinished
        write(doc, HERE / f"{stem}.json", HERE / f"{stem}.md")

    def watch_folds(results: dict[str, list[Outcome]], k: int, total: int) -> None:
        """Summary so far, and every test row's outcome (to pool runs of other folds)."""
        raw = {m: [{key: v.tolist() if isinstance(v, np.ndarray) else v for key, v in o.items()}
                   for o in outs] for m, outs in results.items()}  # fmt: skip
        (HERE / f"{stem}_watch_raw.json").write_text(json.dumps(raw) + "\n")
        left = ", ".join(names[names.index("watch") + 1 :])
        note = f"watch: {k} of {total} folds" + (f"; not yet run: {left}" if left else "")
        save(summarise("watch", results, windowed=True), note if k < total or left else None)

    if args.speed_only:
        done.append((minirocket_speed(args.quick), []))
        save(None, None)
        return
    for i, name in enumerate(names):
        results = run_watch(args, watch_folds) if name == "watch" else run_uea(args, name)
        rows, comparisons = summarise(name, results, windowed=name == "watch")
        if name == "watch" and not args.no_speed:
            rows += minirocket_speed(args.quick)
        done.append((rows, comparisons))
        save(None, ("not yet run: " + ", ".join(names[i + 1 :])) if names[i + 1 :] else None)


if __name__ == "__main__":
    main()
