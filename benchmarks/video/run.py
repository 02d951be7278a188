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
from common import SHARED, arrow_config, avmnist_config, budget  # noqa: E402
from report import accuracy_row, interval, paired, resamples, write  # noqa: E402

SETTINGS = {"full": {"train_rows": 11_000, "val_rows": 1_000, "test_rows": 2_000, "seed": 0},
            "quick": {"train_rows": 600, "val_rows": 100, "test_rows": 200, "seed": 0}}  # fmt: skip
# What runs, in this order (the machine is shared: the rows that answer the targets come
# first, so a run cut short still holds them): "fusion" is the late fusion of the temporal model
# with the best validation direction accuracy so far and the clip's sound track.
PLAN = (
    "avmnist:frames_mean,avmnist:frames_diff,avmnist:audio_only,avmnist:fusion,"
    "arrow:frames_mean,arrow:frames_diff,avmnist:frames_gru,avmnist:frames_transformer,"
    "avmnist:r21d,arrow:frames_gru,arrow:r21d"
)


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


def speakers(table: pd.DataFrame, avmnist: Path) -> pd.Series:
    """The FSDD speaker of each clip's sound track (from its AV-MNIST source row)."""
    audio = pd.read_parquet(avmnist / "train.parquet", columns=["audio"])["audio"]
    names = audio.str.extract(r"_([a-z]+)_\d+\.wav$")[0]
    return pd.Series(names.to_numpy()[table["source"].to_numpy()], index=table.index)


def best_val(pred: Any, output: str) -> float:
    """Validation accuracy of ``output`` at the epoch that was kept (lowest validation loss)."""
    hist = [h for h in pred.artifact_.history if "val" in h]
    best = min(hist, key=lambda h: h["val"]["loss"])
    return float(best["val"][output]["accuracy"])


def settings_of(args: argparse.Namespace) -> dict[str, int]:
    """The generated data's settings; ``--train-rows`` replaces the full run's 11,000."""
    settings = dict(SETTINGS["quick" if args.quick else "full"])
    if args.train_rows and not args.quick:
        settings["train_rows"] = args.train_rows
    return settings


class State:
    """What the parts share: the tables, test correctness per method (for paired comparisons)
    and validation scores (for choosing the fusion's temporal model)."""

    def __init__(self, args: argparse.Namespace) -> None:
        settings = settings_of(args)
        self.folder = moving_avmnist(args.data, settings)
        table = pd.read_csv(self.folder / "train.csv")
        if args.val_speaker:  # validation speaks with a voice training never hears
            self.val = table[speakers(table, args.avmnist) == args.val_speaker]
        else:
            self.val = table.sample(settings["val_rows"], random_state=0)
        self.train, self.test = table.drop(self.val.index), pd.read_csv(self.folder / "test.csv")
        self.idx = resamples(len(self.test))
        self.right: dict[str, dict[str, np.ndarray]] = {"digit": {}, "direction": {}}
        self.val_direction: dict[str, float] = {}
        print(f"moving_avmnist: {len(self.train)} train, {len(self.val)} val, "
              f"{len(self.test)} test", flush=True)  # fmt: skip


def run_avmnist(args: argparse.Namespace, st: State, doc: dict[str, Any], methods: list[str],
                save: Any) -> None:  # fmt: skip
    """Fit and score each method; ``fusion`` stands for the late fusion of the temporal model
    with the best validation direction accuracy so far and the sound track."""
    for method in methods:
        if method.startswith("fusion") and ":" not in method:  # fusion, fusion@48
            temporal = {
                m: v for m, v in st.val_direction.items() if not m.startswith("frames_mean")
            }
            chosen = max(temporal, key=temporal.__getitem__).removesuffix("@48")
            method = "fusion:" + chosen + method.removeprefix("fusion")
        pred = fit(avmnist_config(*budget(method, args.epochs)), st.train, st.val, st.folder)
        out = pred.predict(st.test, base_dir=st.folder)
        saved = out.drop(columns=[c for c in out.columns if "_proba_" in c])
        saved.assign(source=st.test["source"].to_numpy()).to_csv(
            st.folder / f"predictions_{method.replace(':', '_')}.csv", index=False
        )  # per test row, to recompute any metric without training again
        for output in [o.name for o in pred.artifact_.config.outputs]:
            truth = st.test[output].astype(str).to_numpy()
            got = out[output].astype(str).to_numpy() == truth
            st.right[output][method] = got
            row = accuracy_row("moving_avmnist", method, output, got, st.idx, pred.wall_seconds_)
            add(doc, row)
            if output == "direction":
                axis_rows(doc, st, method, out[output].astype(str).to_numpy(), truth, row)
            score = best_val(pred, output)
            add(doc, {"dataset": "moving_avmnist", "method": method, "output": output,
                      "metric": "val_accuracy", "value": round(score, 4),
                      "train_seconds": round(pred.wall_seconds_, 1)})  # fmt: skip
            if output == "direction":
                st.val_direction[method] = score
        epoch_row(doc, method, pred)
        print(f"{method}: " + ", ".join(f"{o} {st.right[o][method].mean():.4f}" for o in st.right
                                        if method in st.right[o]), flush=True)  # fmt: skip
        save()


AXIS = {"E": "E-W", "W": "E-W", "N": "N-S", "S": "N-S", "NE": "NE-SW", "SW": "NE-SW",
        "NW": "NW-SE", "SE": "NW-SE"}  # fmt: skip


def axis_rows(
    doc: dict[str, Any], st: State, method: str, guess: np.ndarray, truth: np.ndarray,
    base: dict[str, Any],
) -> None:  # fmt: skip
    """Direction split in two: the axis of motion (4 classes; an unordered set of frames shows
    it as a smear, so mean pooling may get it) and, where the axis is right, the sign along it
    (which only frame order tells: chance is 0.5)."""
    axis = np.array([AXIS[g] == AXIS[t] for g, t in zip(guess, truth, strict=True)])
    sign = np.where(axis, guess == truth, np.nan)
    add(doc, {**accuracy_row("moving_avmnist", method, "direction", axis, st.idx, 0.0),
              "metric": "axis_accuracy", "train_seconds": base["train_seconds"]})  # fmt: skip
    boot = [np.nanmean(sign[i]) for i in st.idx]
    add(doc, {"dataset": "moving_avmnist", "method": method, "output": "direction",
              "metric": "sign_accuracy_given_axis", "value": round(float(np.nanmean(sign)), 4),
              "train_seconds": base["train_seconds"], "ci95": interval(np.asarray(boot))})  # fmt: skip


def avmnist_comparisons(st: State) -> list[dict[str, Any]]:
    """Fusion against picture-only (its own temporal model) and audio-only on ``digit``; the
    best temporal model (validation) against mean pooling and the others on ``direction``."""
    pairs = []
    digit, direction = st.right["digit"], st.right["direction"]
    for fused in [m for m in digit if m.startswith(FUSED)]:
        pairs += [("digit", fused, b) for b in single(fused) if b in digit]
    temporal = {
        m: v
        for m, v in st.val_direction.items()
        if not m.startswith("frames_mean") and ":" not in m
    }
    if temporal:
        best = max(temporal, key=temporal.__getitem__)
        pairs += [("direction", best, b) for b in direction if b != best and ":" not in b]
    return [paired("moving_avmnist", o, a, b, st.right[o], st.idx) for o, a, b in pairs]


FUSED = ("fusion:", "fusion_concat:")


def single(fused: str) -> tuple[str, str]:
    """The single-modality methods a fused one is compared with, on the same epoch budget:
    ``fusion_concat:frames_diff*6`` -> (``frames_diff*6``, ``audio_only*6``)."""
    picture = fused.split(":", 1)[1]
    _, star, epochs = picture.partition("*")
    return picture, "audio_only" + star + epochs


def epoch_row(doc: dict[str, Any], method: str, pred: Any) -> None:
    """Seconds of one training epoch (validation excluded), the fastest epoch run."""
    hist = pred.artifact_.history
    add(doc, {"dataset": "moving_avmnist", "method": method, "output": "-",
              "metric": "epoch_seconds", "value": round(min(h["seconds"] for h in hist), 1),
              "train_seconds": round(pred.wall_seconds_, 1), "epochs": len(hist)})  # fmt: skip


def decoding(folder: Path, clips: int) -> dict[str, Any]:
    """decode_speed.py on the test clips (wall clock: 1 process and 2 worker processes), and the
    same decoding in this process timed in CPU seconds: on a shared machine the wall clock says
    how busy the others are, the CPU time what decoding costs (one clip per core at a time)."""
    from decode_speed import OPTIONS, decode

    cmd = [sys.executable, str(HERE / "decode_speed.py"), str(folder / "test.csv"),
           "--clips", str(clips), "--workers", "2"]  # fmt: skip
    line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
    out = dict(json.loads(line))
    cells = pd.read_csv(folder / "test.csv")["clip"].head(clips).tolist()
    decode((cells[:20], str(folder)))  # warm-up
    cpu, wall = time.process_time(), time.perf_counter()
    assert decode((cells, str(folder))) == len(cells)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    out |= {"clips_per_cpu_s": round(len(cells) / cpu, 1),
            "frames_per_cpu_s": round(len(cells) * OPTIONS["num_frames"] / cpu),
            "cpu_share_while_measured": round(cpu / wall, 2)}  # fmt: skip
    print(f"decoding: {out}", flush=True)
    return out


def step_cost(method: str, batches: int = 5) -> dict[str, Any]:
    """CPU seconds of a training step (forward, backward, AdamW) of ``method``'s video encoder and
    heads on a batch of 64 clips at the benchmark's setting, extrapolated to an epoch of 10,000
    clips; with the wall clock of the same steps (which a busy machine stretches)."""
    from polymodal import registry
    from polymodal.encoders import video as _video  # noqa: F401  (registers the encoders)

    spec = avmnist_config(method, 1)["inputs"][0]
    n, size = spec["preprocessing"]["num_frames"], spec["preprocessing"]["image_size"]
    extra = {"in_channels": 1} | ({} if method == "r21d" else {"image_size": size})
    enc = registry.build("encoder", dict(spec["encoder"]), modality="video", **extra)
    heads = torch.nn.Linear(enc.out_dim, 18)  # the digit (10) and direction (8) heads
    opt = torch.optim.AdamW([*enc.parameters(), *heads.parameters()])
    x, y = torch.randn(64, n, 1, size, size), torch.randint(0, 10, (64,))
    for i in range(batches + 1):
        if i == 1:  # the first step allocates: not counted
            cpu, wall = time.process_time(), time.perf_counter()
        loss = torch.nn.functional.cross_entropy(heads(enc(x))[:, :10], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    per = (time.process_time() - cpu) / batches, (time.perf_counter() - wall) / batches
    return {"method": method, "frames": n, "image_size": size,
            "epoch_cpu_seconds_10k": round(per[0] * 10_000 / 64, 1),
            "epoch_wall_seconds_10k": round(per[1] * 10_000 / 64, 1)}  # fmt: skip


class Arrow:
    """The arrow-of-time pieces, their folds and per-piece correctness of each method."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.base = args.data / "arrow_of_time"
        self.frame = arrow.build(SHARED / "video", self.base)
        self.folds = arrow.folds(self.frame)[:2] if args.quick else arrow.folds(self.frame)
        tested = self.frame["group"].isin([t for t, _ in self.folds])
        self.pieces = self.frame.loc[tested, "piece"].unique()
        self.idx = resamples(len(self.pieces))
        self.right: dict[str, np.ndarray] = {}


def run_arrow(args: argparse.Namespace, ar: Arrow, doc: dict[str, Any], methods: list[str],
              save: Any) -> None:  # fmt: skip
    """Leave one group out: each fold tests one group, validates on the next, trains on the
    rest; a piece's two copies (forward, backward) are scored by the fold that held it out."""
    frame = ar.frame
    for method in methods:
        hits = pd.Series(np.nan, index=frame.index)
        seconds, vals = 0.0, []
        for test_group, val_group in ar.folds:
            test = frame[frame["group"] == test_group]
            val = frame[frame["group"] == val_group]
            train = frame[~frame["group"].isin([test_group, val_group])]
            pred = fit(arrow_config(method, args.arrow_epochs), train, val, ar.base)
            out = pred.predict(test, base_dir=ar.base)
            hits[test.index] = (out["arrow"].to_numpy() == test["arrow"].to_numpy()) * 1.0
            seconds += pred.wall_seconds_
            vals.append(best_val(pred, "arrow"))
            print(f"arrow {method} test {test_group}: {hits[test.index].mean():.3f}", flush=True)
        scored = hits.dropna()
        per_piece = scored.groupby(frame.loc[scored.index, "piece"]).apply(list)
        got = np.asarray(per_piece.reindex(ar.pieces).tolist())  # (pieces, 2 copies)
        ar.right[method] = got
        add(doc, accuracy_row("arrow_of_time", method, "arrow", got, ar.idx, seconds))
        add(doc, {"dataset": "arrow_of_time", "method": method, "output": "arrow",
                  "metric": "val_accuracy", "value": round(float(np.mean(vals)), 4),
                  "train_seconds": round(seconds, 1)})  # fmt: skip
        save()


def arrow_comparisons(ar: Arrow) -> list[dict[str, Any]]:
    """Each temporal model against frame mean pooling, paired over the same pieces."""
    if "frames_mean" not in ar.right:
        return []
    return [paired("arrow_of_time", "arrow", m, "frames_mean", ar.right, ar.idx)
            for m in ar.right if m != "frames_mean"]  # fmt: skip


def add(doc: dict[str, Any], row: dict[str, Any]) -> None:
    doc["rows"].append(row)


def checks(doc: dict[str, Any]) -> list[str]:
    """The targets, read off this run's rows."""
    acc = {(r["dataset"], r["method"], r["output"]): r["value"] for r in doc["rows"]
           if r["metric"] == "accuracy"}  # fmt: skip
    out = []
    direction = {m: v for (d, m, o), v in acc.items() if d == "moving_avmnist" and o == "direction"}
    temporal = {
        m: v for m, v in direction.items() if not m.startswith("frames_mean") and ":" not in m
    }
    if temporal:
        best = max(temporal, key=temporal.__getitem__)
        out.append(f"direction: best temporal model {best} {temporal[best]:.4f} (target >= 0.95: "
                   f"{'met' if temporal[best] >= 0.95 else 'missed'}); frames_mean "
                   f"{direction.get('frames_mean', float('nan')):.4f} (target <= 0.20)")  # fmt: skip
    for r in doc["rows"]:
        if r["metric"] == "sign_accuracy_given_axis":
            axis = next(x["value"] for x in doc["rows"] if x["method"] == r["method"]
                        and x["metric"] == "axis_accuracy")  # fmt: skip
            out.append(f"direction, {r['method']}: axis of motion {axis:.4f} (chance 0.25), "
                       f"sign along it {r['value']:.4f} (chance 0.5)")  # fmt: skip
    fused = {m: v for (d, m, o), v in acc.items() if m.startswith(FUSED) and o == "digit"}
    for m, v in fused.items():
        picture, audio = single(m)
        pic = acc.get(("moving_avmnist", picture, "digit"), float("nan"))
        aud = acc.get(("moving_avmnist", audio, "digit"), float("nan"))
        ok = v > max(pic, aud) and v >= 0.93
        out.append(f"digit: {m} {v:.4f} vs picture-only {pic:.4f}, audio-only {aud:.4f} "
                   f"(target: above both and >= 0.93: {'met' if ok else 'missed'})")  # fmt: skip
    if doc.get("decoding"):
        d = doc["decoding"]
        wall = max(v for k, v in d.items() if k.startswith("clips_per_s"))
        out.append(f"decoding: {d['clips_per_s']} clips/s in 1 process, {wall} at best by the "
                   f"wall clock of this shared machine (target >= 200: "
                   f"{'met' if wall >= 200 else 'missed'}); CPU cost {d.get('clips_per_cpu_s')} "
                   f"clips per CPU-second, i.e. {2 * d.get('clips_per_cpu_s', 0):.0f} clips/s for 2 "
                   "worker processes on 2 free cores")  # fmt: skip
    for c in doc.get("training_step_cost", []):
        cpu = c["epoch_cpu_seconds_10k"]
        out.append(f"epoch of 10,000 clips, {c['method']} ({c['frames']} frames, "
                   f"{c['image_size']} px): {cpu} CPU seconds, {cpu / 2:.0f}-{cpu:.0f} s on 2 "
                   f"free cores (target < 120 s)")  # fmt: skip
    for r in doc["rows"]:
        if r["metric"] == "epoch_seconds" and r["method"] != "audio_only":
            out.append(
                f"measured epoch ({r['method']}, wall clock, shared machine): {r['value']} s"
            )
    return out


def axis_from_predictions(folder: Path, stem: Path) -> None:
    """Axis and sign rows recomputed from saved test predictions (no training)."""
    doc = json.loads(stem.with_suffix(".json").read_text())
    test = pd.read_csv(folder / "test.csv")
    st = argparse.Namespace(idx=resamples(len(test)))
    done = {(r["method"], r["metric"]) for r in doc["rows"]}
    for r in [r for r in doc["rows"] if r["output"] == "direction" and r["metric"] == "accuracy"]:
        path = folder / f"predictions_{r['method'].replace(':', '_')}.csv"
        if path.exists() and (r["method"], "axis_accuracy") not in done:
            guess = pd.read_csv(path)["direction"].astype(str).to_numpy()
            axis_rows(doc, st, r["method"], guess, test["direction"].astype(str).to_numpy(), r)  # type: ignore[arg-type]
    doc["checks"] = checks(doc)
    write(doc, stem)


def merge(paths: list[Path], stem: Path) -> None:
    """One results file from runs of different parts (run side by side as two processes):
    rows, comparisons and checks joined; the commands listed."""
    docs = [json.loads(p.read_text()) for p in paths]
    doc = {**docs[0], "command": " & ".join(d["command"] for d in docs),
           "rows": [r for d in docs for r in d["rows"]],
           "comparisons": [c for d in docs for c in d["comparisons"]],
           "total_seconds": max(d["total_seconds"] for d in docs)}  # fmt: skip
    for d in docs[1:]:
        doc["decoding"] = doc.get("decoding") or d.get("decoding")
        doc["training_step_cost"] = doc.get("training_step_cost") or d.get("training_step_cost")
    doc["checks"] = checks(doc)
    write(doc, stem)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="600 + 200 clips, 1 epoch, 2 folds")
    ap.add_argument("--data", type=Path, default=Path("/tmp/polymodal_video_bench"),
                    help="where generated clips go (outside the repository)")  # fmt: skip
    ap.add_argument("--epochs", type=int, default=2, help="Moving AV-MNIST epochs (at most)")
    ap.add_argument("--arrow-epochs", type=int, default=8, help="arrow of time epochs (at most)")
    ap.add_argument("--plan", default=PLAN, help="part:method,... in the order they run")
    ap.add_argument("--decode-clips", type=int, default=1000, help="0: no decoding measurement")
    ap.add_argument("--out", help="results file stem (default results / results_quick)")
    ap.add_argument("--merge", nargs="+", type=Path, help="join the JSON of runs of parts")
    ap.add_argument("--val-speaker", help="validate on the clips of this AV-MNIST training "
                    "speaker (jackson, nicolas, theo), train on the others' (default: 1,000 "
                    "random clips validate)")  # fmt: skip
    ap.add_argument("--train-rows", type=int, help="clips generated from the AV-MNIST training "
                    "table, validation rows included (default 11,000; the first 11,000 of a "
                    "larger set are the default set's clips)")  # fmt: skip
    ap.add_argument("--avmnist", type=Path, default=SHARED / "avmnist", help=argparse.SUPPRESS)
    ap.add_argument("--axis-from", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.merge:
        merge(args.merge, HERE / (args.out or "results"))
        return
    if args.axis_from:
        axis_from_predictions(args.axis_from, HERE / (args.out or "results"))
        return
    if args.quick:
        args.epochs, args.arrow_epochs, args.decode_clips = 1, 1, min(args.decode_clips, 200)
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    command = "python " + " ".join([str(Path(sys.argv[0])), *sys.argv[1:]])
    doc: dict[str, Any] = {
        "command": command, "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared), torch "
                   f"{torch.__version__}",
        "settings": {"epochs": args.epochs, "arrow_epochs": args.arrow_epochs, "val_speaker": args.val_speaker,
                     **settings_of(args)},
        "rows": [], "comparisons": [], "decoding": {},
    }  # fmt: skip
    stem = HERE / (args.out or ("results_quick" if args.quick else "results"))
    st, ar = State(args), None

    def save() -> None:
        doc["comparisons"] = avmnist_comparisons(st) + (arrow_comparisons(ar) if ar else [])
        doc["total_seconds"] = round(time.perf_counter() - t0, 1)
        doc["checks"] = checks(doc)
        write(doc, stem)

    if args.decode_clips:
        doc["decoding"] = decoding(st.folder, args.decode_clips)
        doc["training_step_cost"] = [step_cost(m) for m in ("frames_diff", "frames_gru", "r21d")]
        print(f"training step cost: {doc['training_step_cost']}", flush=True)
        save()
    for step in [s for s in args.plan.split(",") if s]:  # --plan "": decoding and cost only
        part, method = step.split(":", 1)
        if part == "avmnist":
            run_avmnist(args, st, doc, [method], save)
        else:
            ar = ar or Arrow(args)
            run_arrow(args, ar, doc, [method], save)
    save()
    print(stem.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
