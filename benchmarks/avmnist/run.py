"""AV-MNIST fusion benchmark: image-only, audio-only and every fusion method, same encoders and
budget, trained and evaluated through polymodal's public API; plus a plain-PyTorch reference
(reference.py) on the same tensors. Each run is its own process so peak RSS is its own.

    python benchmarks/avmnist/run.py            # full data, writes results.json / results.md
    python benchmarks/avmnist/run.py --quick    # smoke run on a subset, 1 epoch
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import FUSIONS, config  # noqa: E402

DEFAULT_DATA = HERE.parents[1].parent / "shared" / "data" / "avmnist"
DROPOUT_METHODS = ("concat", "attention", "gated")  # also trained with modality dropout


def load(data: Path, quick: bool) -> dict[str, pd.DataFrame]:
    frames = {s: pd.read_parquet(data / f"{s}.parquet") for s in ("train", "val", "test")}
    if quick:
        sizes = {"train": 3000, "val": 500, "test": 1000}
        frames = {s: f.sample(sizes[s], random_state=0) for s, f in frames.items()}
    return frames


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(method: str, args: argparse.Namespace) -> dict[str, Any]:
    from polymodal import Predictor

    frames = load(args.data, args.quick)
    cfg = config(
        method.removesuffix("+moddrop"),
        args.epochs,
        args.modality_dropout if method.endswith("+moddrop") else 0.0,
    )
    pred = Predictor(cfg).fit(
        frames["train"], val=frames["val"], test=frames["test"], base_dir=args.data
    )
    hist = pred.artifact_.history
    train_seconds = sum(r["seconds"] for r in hist)
    t0 = time.perf_counter()
    pred.predict(frames["test"], base_dir=args.data)
    infer = len(frames["test"]) / (time.perf_counter() - t0)
    row: dict[str, Any] = {
        "method": method,
        "test_accuracy": pred.metrics_["test"]["label"]["accuracy"],
        "val_accuracy": max(r["val"]["label"]["accuracy"] for r in hist),
        "epochs": len(hist),
        "train_seconds": round(train_seconds, 1),
        "train_samples_per_s": round(len(frames["train"]) * len(hist) / train_seconds, 1),
        "infer_samples_per_s": round(infer, 1),
        "params": sum(p.numel() for p in pred.artifact_.model.parameters()),
        "modality_dropout": cfg["trainer"]["modality_dropout"],
        "acc_image_missing": None,
        "acc_audio_missing": None,
    }
    if len(cfg["inputs"]) > 1:
        rob = pred.robustness(frames["test"], noise_levels=(), base_dir=args.data)
        for r in rob["rows"]:
            if r["condition"] == "missing":
                row[f"acc_{r['modality']}_missing"] = r["label"]
    row["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return row


def export_tensors(path: Path, args: argparse.Namespace) -> None:
    """The concat model's preprocessed tensors, for the plain-PyTorch reference."""
    from safetensors.torch import save_file

    from polymodal.config import load_config
    from polymodal.data import TablePipeline
    from polymodal.models import preprocessing_options

    frames = load(args.data, args.quick)
    cfg = load_config(config("concat", args.epochs))
    options = {i.name: preprocessing_options(i) for i in cfg.inputs}
    pipe = TablePipeline(cfg.inputs, cfg.outputs, options).fit(frames["train"], args.data)
    tensors = {}
    for split, frame in frames.items():
        ds = pipe.dataset(frame, args.data)
        every = ds.inputs["image"].present.nonzero().squeeze(1)
        tensors[f"{split}.image"] = ds.inputs["image"].rows(every).contiguous()
        tensors[f"{split}.audio"] = ds.inputs["audio"].rows(every).contiguous()
        tensors[f"{split}.label"] = ds.targets["label"].contiguous()
    save_file(tensors, str(path))


def child(cmd: list[str]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    subprocess.run([sys.executable, *cmd, "--result", str(out)], check=True)
    row = json.loads(out.read_text())
    out.unlink()
    return row


def markdown(result: dict[str, Any]) -> str:
    cols = ["method", "test_accuracy", "val_accuracy", "acc_image_missing", "acc_audio_missing", "epochs",
            "train_seconds", "train_samples_per_s", "infer_samples_per_s", "peak_rss_mb", "params", "modality_dropout"]  # fmt: skip

    def fmt(col: str, v: Any) -> str:
        if v is None:
            return "–"
        return f"{v:.4f}" if "acc" in col else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in [
        *result["rows"],
        {**result["reference"], "method": "reference (plain PyTorch, concat)"},
    ]:
        lines.append("| " + " | ".join(fmt(c, r.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def summary(result: dict[str, Any]) -> str:
    """The issue's targets, computed from this run's rows."""
    rows = {r["method"]: r for r in result["rows"]}
    lines = []
    singles = [rows[m]["test_accuracy"] for m in ("image_only", "audio_only") if m in rows]
    fused = {
        m: r["test_accuracy"] for m, r in rows.items() if m not in ("image_only", "audio_only")
    }
    if fused:
        best = max(fused, key=fused.__getitem__)
        lines.append(f"- best fused test accuracy: {fused[best]:.4f} ({best})")
    if fused and len(singles) == 2:
        below = [m for m, a in fused.items() if a <= max(singles)]
        lines.append(f"- fused methods not above both single-modality models: {below or 'none'}")
    for m, r in rows.items():
        base = rows.get(m.removesuffix("+moddrop"))
        if m.endswith("+moddrop") and base and len(singles) == 2:
            lines.append(
                f"- {m}: image missing {r['acc_image_missing']:.4f} vs audio_only "
                f"{singles[1]:.4f}; audio missing {r['acc_audio_missing']:.4f} vs image_only "
                f"{singles[0]:.4f}; full {r['test_accuracy']:.4f} vs {base['test_accuracy']:.4f} "
                "without modality dropout"
            )
    if "concat" in rows:
        ratio = rows["concat"]["train_samples_per_s"] / result["reference"]["train_samples_per_s"]
        lines.append(f"- training throughput, polymodal concat / plain PyTorch: {ratio:.3f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--quick", action="store_true", help="3,000-row subset, 1 epoch")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--modality-dropout", type=float, default=0.3)
    ap.add_argument(
        "--methods", default=",".join([*FUSIONS, *(m + "+moddrop" for m in DROPOUT_METHODS)])
    )
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--export", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.epochs = 1
    if args.one:
        args.result.write_text(json.dumps(run_one(args.one, args)))
        return
    if args.export:
        export_tensors(args.export, args)
        return
    passthrough = [
        "--data",
        str(args.data),
        "--epochs",
        str(args.epochs),
        "--modality-dropout",
        str(args.modality_dropout),
    ]
    passthrough += ["--quick"] if args.quick else []
    started = time.perf_counter()
    rows = []
    for method in args.methods.split(","):
        print(f"--- {method}", flush=True)
        rows.append(child([__file__, "--one", method, *passthrough]))
        print(json.dumps(rows[-1]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tensors = Path(tmp) / "tensors.safetensors"
        subprocess.run(
            [sys.executable, __file__, "--export", str(tensors), *passthrough], check=True
        )
        print("--- reference", flush=True)
        reference = child(
            [str(HERE / "reference.py"), "--tensors", str(tensors), "--epochs", str(args.epochs)]
        )
        print(json.dumps(reference), flush=True)
    command = "python benchmarks/avmnist/run.py" + (" --quick" if args.quick else "")
    result = {
        "command": command,
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPU cores, {platform.python_version()}",
        "total_seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
        "reference": reference,
    }
    suffix = "_quick" if args.quick else ""
    (args.out / f"results{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"results{suffix}.md").write_text(
        f"# AV-MNIST results\n\n`{command}` on {result['date']} ({result['machine']}), "
        f"{result['total_seconds']:.0f} s in all.\n\n{markdown(result)}\n\n{summary(result)}\n"
    )
    print(markdown(result), summary(result), sep="\n\n")


if __name__ == "__main__":
    main()
