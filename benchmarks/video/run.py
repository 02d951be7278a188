"""Video benchmark (issue 20), trained and scored through polymodal's public API (Predictor).

1. Decoding speed: 16 frames of each of 2,000 Moving AV-MNIST clips, in one process and in
   spawned worker processes (decode_speed.py).
2. Moving AV-MNIST (generate.py, written outside the repository and reused when its settings
   match): 11,000 clips from the AV-MNIST training table, 1,000 of them held out for validation
   (early stopping, choosing the fusion's temporal model), 10,000 train; 2,000 test clips from its
   test table (an unseen speaker). Picture-only models with two heads (``digit``, ``direction``):
   a frame CNN + mean pooling / GRU / Transformer / temporal differences, and a (2+1)-D CNN;
   audio-only (the clip's own sound track) for ``digit``; late fusion (product) of the picture
   model chosen on validation with the sound track.
3. Arrow of time on the 8 real clips (arrow.py): forwards or backwards, leave-one-group-out.

    python benchmarks/video/run.py            # full run: results.json / results.md here
    python benchmarks/video/run.py --quick    # 600 + 200 clips, 1 epoch: a smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import arrow  # noqa: E402
from common import METHODS, SHARED, arrow_config, avmnist_config  # noqa: E402
from report import accuracy_row, paired, resamples, write  # noqa: E402

SETTINGS = {"full": {"train_rows": 11_000, "val_rows": 1_000, "test_rows": 2_000, "seed": 0},
            "quick": {"train_rows": 600, "val_rows": 100, "test_rows": 200, "seed": 0}}  # fmt: skip
ARROW_METHODS = ("frames_mean", "frames_diff", "frames_gru", "r21d")


def moving_avmnist(root: Path, settings: dict[str, int]) -> Path:
    """The generated data's folder (generated unless already there with these settings)."""
    keep = {k: v for k, v in settings.items() if k != "val_rows"}
    folder = root / "moving_avmnist_{train_rows}_{test_rows}_seed{seed}".format(**keep)
    stamp = folder / "settings.json"
    if stamp.exists() and json.loads(stamp.read_text()) == keep:
        return folder
    cmd = [sys.executable, str(HERE / "generate.py"), str(folder), "--train-rows",
           str(keep["train_rows"]), "--test-rows", str(keep["test_rows"]), "--seed",
           str(keep["seed"])]  # fmt: skip
    subprocess.run(cmd, check=True)
    stamp.write_text(json.dumps(keep))
    return folder


def fit(cfg: dict[str, Any], train: pd.DataFrame, val: pd.DataFrame, base: Path) -> Any:
    from polymodal import Predictor

    torch.manual_seed(0)
    t0 = time.perf_counter()
    pred = Predictor(cfg).fit(train, val=val, base_dir=base)
    pred.wall_seconds_ = time.perf_counter() - t0
    return pred


def best_val(pred: Any, output: str) -> float:
    """Validation accuracy of ``output`` at the epoch that was kept (lowest validation loss)."""
    hist = [h for h in pred.artifact_.history if "val" in h]
    best = min(hist, key=lambda h: h["val"]["loss"])
    return float(best["val"][output]["accuracy"])


def run_avmnist(args: argparse.Namespace, doc: dict[str, Any], save: Any) -> None:
    settings = SETTINGS["quick" if args.quick else "full"]
    folder = moving_avmnist(args.data, settings)
    table = pd.read_csv(folder / "train.csv")
    val = table.sample(settings["val_rows"], random_state=0)
    train, test = table.drop(val.index), pd.read_csv(folder / "test.csv")
    print(f"moving_avmnist: {len(train)} train, {len(val)} val, {len(test)} test", flush=True)
    if not args.skip_speed:
        doc["decoding"] = decoding(folder, 200 if args.quick else 2000)
        save()
    idx = resamples(len(test))
    right: dict[str, dict[str, np.ndarray]] = {"digit": {}, "direction": {}}
    val_scores: dict[str, float] = {}
    methods = [m for m in METHODS if m in args.methods] + ["audio_only"]
    for method in methods:
        pred = fit(avmnist_config(method, args.epochs), train, val, folder)
        out = pred.predict(test, base_dir=folder)
        for output in [o.name for o in pred.artifact_.config.outputs]:
            got = out[output].astype(str).to_numpy() == test[output].astype(str).to_numpy()
            right[output][method] = got
            add(doc, accuracy_row("moving_avmnist", method, output, got, idx, pred.wall_seconds_))
            score = best_val(pred, output)
            add(doc, {"dataset": "moving_avmnist", "method": method, "output": output,
                      "metric": "val_accuracy", "value": round(score, 4),
                      "train_seconds": round(pred.wall_seconds_, 1)})  # fmt: skip
            if output == "direction":
                val_scores[method] = score
        epoch_row(doc, method, pred)
        print(f"{method}: " + ", ".join(f"{o} {right[o][method].mean():.4f}" for o in right
                                        if method in right[o]), flush=True)  # fmt: skip
        save()
    temporal = {m: s for m, s in val_scores.items() if m != "frames_mean"}
    chosen = max(temporal, key=temporal.__getitem__)  # on validation direction accuracy
    method = f"fusion:{chosen}"
    pred = fit(avmnist_config(method, args.epochs), train, val, folder)
    out = pred.predict(test, base_dir=folder)
    for output in ("digit", "direction"):
        got = out[output].astype(str).to_numpy() == test[output].astype(str).to_numpy()
        right[output][method] = got
        add(doc, accuracy_row("moving_avmnist", method, output, got, idx, pred.wall_seconds_))
    print(f"{method}: digit {right['digit'][method].mean():.4f}", flush=True)
    pairs = [("digit", method, chosen), ("digit", method, "audio_only"),
             ("direction", chosen, "frames_mean")]  # fmt: skip
    pairs += [("direction", m, chosen) for m in temporal if m != chosen]
    doc["comparisons"] += [paired("moving_avmnist", o, a, b, right[o], idx) for o, a, b in pairs]
    save()


def epoch_row(doc: dict[str, Any], method: str, pred: Any) -> None:
    """Seconds of one training epoch (validation excluded), the fastest epoch run."""
    hist = pred.artifact_.history
    add(doc, {"dataset": "moving_avmnist", "method": method, "output": "-",
              "metric": "epoch_seconds", "value": round(min(h["seconds"] for h in hist), 1),
              "train_seconds": round(pred.wall_seconds_, 1), "epochs": len(hist)})  # fmt: skip


def decoding(folder: Path, clips: int) -> dict[str, Any]:
    """decode_speed.py on the test clips: 1 process and 2 worker processes."""
    cmd = [sys.executable, str(HERE / "decode_speed.py"), str(folder / "test.csv"),
           "--clips", str(clips), "--workers", "2"]  # fmt: skip
    line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
    print(f"decoding: {line}", flush=True)
    return dict(json.loads(line))


def run_arrow(args: argparse.Namespace, doc: dict[str, Any], save: Any) -> None:
    frame = arrow.build(SHARED / "video", args.data / "arrow_of_time")
    pieces = frame["piece"].unique()
    idx = resamples(len(pieces))
    folds = arrow.folds(frame)[:2] if args.quick else arrow.folds(frame)
    right: dict[str, np.ndarray] = {}
    for method in [m for m in ARROW_METHODS if m in args.methods]:
        hits = pd.Series(0.0, index=frame.index)
        seconds, vals = 0.0, []
        for test_group, val_group in folds:
            test = frame[frame["group"] == test_group]
            val = frame[frame["group"] == val_group]
            train = frame[~frame["group"].isin([test_group, val_group])]
            pred = fit(
                arrow_config(method, args.arrow_epochs), train, val, args.data / "arrow_of_time"
            )
            out = pred.predict(test, base_dir=args.data / "arrow_of_time")
            hits[test.index] = (out["arrow"].to_numpy() == test["arrow"].to_numpy()) * 1.0
            seconds += pred.wall_seconds_
            vals.append(best_val(pred, "arrow"))
            print(f"arrow {method} test {test_group}: {hits[test.index].mean():.3f}", flush=True)
        scored = frame.index[frame["group"].isin([t for t, _ in folds])]
        by_piece = hits[scored].groupby(frame.loc[scored, "piece"]).apply(list)
        got = np.asarray(by_piece.tolist())  # (pieces, 2): forward and backward copy
        right[method] = got
        piece_idx = idx if len(got) == len(pieces) else resamples(len(got))
        add(doc, accuracy_row("arrow_of_time", method, "arrow", got, piece_idx, seconds))
        add(doc, {"dataset": "arrow_of_time", "method": method, "output": "arrow",
                  "metric": "val_accuracy", "value": round(float(np.mean(vals)), 4),
                  "train_seconds": round(seconds, 1)})  # fmt: skip
        save()
    base = right.get("frames_mean")
    for method in right:
        if method != "frames_mean" and base is not None:
            n = len(base)
            doc["comparisons"].append(
                paired("arrow_of_time", "arrow", method, "frames_mean", right, resamples(n))
            )
    save()


def add(doc: dict[str, Any], row: dict[str, Any]) -> None:
    doc["rows"].append(row)


def checks(doc: dict[str, Any]) -> list[str]:
    """The targets, read off this run's rows."""
    acc = {(r["dataset"], r["method"], r["output"]): r["value"] for r in doc["rows"]
           if r["metric"] == "accuracy"}  # fmt: skip
    out = []
    direction = {m: v for (d, m, o), v in acc.items() if d == "moving_avmnist" and o == "direction"}
    temporal = {m: v for m, v in direction.items() if m != "frames_mean" and ":" not in m}
    if temporal:
        best = max(temporal, key=temporal.__getitem__)
        out.append(f"direction: best temporal model {best} {temporal[best]:.4f} (target >= 0.95: "
                   f"{'met' if temporal[best] >= 0.95 else 'missed'}); frames_mean "
                   f"{direction.get('frames_mean', float('nan')):.4f} (target <= 0.20)")  # fmt: skip
    fused = {m: v for (d, m, o), v in acc.items() if m.startswith("fusion:") and o == "digit"}
    for m, v in fused.items():
        pic, aud = acc[("moving_avmnist", m.split(":")[1], "digit")], acc[("moving_avmnist", "audio_only", "digit")]  # fmt: skip
        ok = v > max(pic, aud) and v >= 0.93
        out.append(f"digit: {m} {v:.4f} vs picture-only {pic:.4f}, audio-only {aud:.4f} "
                   f"(target: above both and >= 0.93: {'met' if ok else 'missed'})")  # fmt: skip
    if doc.get("decoding"):
        d = doc["decoding"]
        best = max(v for k, v in d.items() if k.startswith("clips_per_s"))
        out.append(f"decoding: {d['clips_per_s']} clips/s in 1 process, {best} at best "
                   f"(target >= 200: {'met' if best >= 200 else 'missed'})")  # fmt: skip
    epochs = [
        r for r in doc["rows"] if r["metric"] == "epoch_seconds" and r["method"] != "audio_only"
    ]
    for r in epochs:
        out.append(f"epoch of 10,000 clips, {r['method']}: {r['value']} s (target < 120 s)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="600 + 200 clips, 1 epoch, 2 folds")
    ap.add_argument("--data", type=Path, default=Path("/tmp/polymodal_video_bench"),
                    help="where generated clips go (outside the repository)")  # fmt: skip
    ap.add_argument("--epochs", type=int, default=4, help="Moving AV-MNIST epochs (at most)")
    ap.add_argument("--arrow-epochs", type=int, default=12, help="arrow of time epochs (at most)")
    ap.add_argument("--parts", default="avmnist,arrow")
    ap.add_argument("--methods", default=",".join(dict.fromkeys([*METHODS, *ARROW_METHODS])))
    ap.add_argument("--skip-speed", action="store_true", help="no decoding measurement")
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.arrow_epochs = 1, 1
    args.methods = args.methods.split(",")
    args.data.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    command = "python " + " ".join([str(Path(sys.argv[0])), *sys.argv[1:]])
    doc: dict[str, Any] = {
        "command": command, "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared), torch "
                   f"{torch.__version__}",
        "settings": {"epochs": args.epochs, "arrow_epochs": args.arrow_epochs,
                     **SETTINGS["quick" if args.quick else "full"]},
        "rows": [], "comparisons": [], "decoding": {},
    }  # fmt: skip
    stem = HERE / ("results_quick" if args.quick else "results")

    def save() -> None:
        doc["total_seconds"] = round(time.perf_counter() - t0, 1)
        doc["checks"] = checks(doc)
        write(doc, stem)

    if "avmnist" in args.parts:
        run_avmnist(args, doc, save)
    if "arrow" in args.parts:
        run_arrow(args, doc, save)
    save()
    print(stem.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
