"""Clothing reviews (text + numbers + categories): polymodal text-only, tabular-only and fused
models against scikit-learn logistic-regression references, on one seeded split, for two tasks:
(A) Recommended IND (binary) and (B) Rating (5 classes). Every model runs in its own process
(its own peak RSS); polymodal models train through the public API.

    python benchmarks/clothing/run.py            # full run: writes results.json and results.md
    python benchmarks/clothing/run.py --quick    # 2,000 rows, 2 epochs: a smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import DEFAULT_DATA, TASKS, VARIANTS, config, peak_rss_mb, split  # noqa: E402

INFER_ROWS = 1000  # inference speed: Predictor.predict on this many test rows, MiniLM included


def load(args: argparse.Namespace) -> dict[str, pd.DataFrame]:
    frame = pd.read_csv(args.data)
    if args.quick:
        frame = frame.sample(2000, random_state=0)
    return split(frame)


def run_variant(variant: str, task: str, args: argparse.Namespace) -> dict[str, Any]:
    from polymodal import Predictor

    frames = load(args)
    target = TASKS[task][0]
    cfg = config(variant, task, args.cache_dir, epochs=args.epochs)
    pred = Predictor(cfg).fit(frames["train"], val=frames["val"], test=frames["test"])
    hist = pred.artifact_.history
    sample = frames["test"].head(INFER_ROWS)
    t0 = time.perf_counter()
    pred.predict(sample)  # no cache here: the encoder runs, as it would when serving
    infer = len(sample) / (time.perf_counter() - t0)
    test = pred.metrics_["test"][target]  # evaluated inside fit (frozen features cached)
    binary = TASKS[task][1] == "binary"  # multiclass reports a one-vs-rest ROC-AUC too
    keys = ("roc_auc", "f1", "macro_f1", "accuracy") if binary else ("macro_f1", "accuracy")
    return {
        "model": f"polymodal_{variant}", "task": task,
        **{k: round(test[k], 4) for k in keys},
        "train_seconds": round(sum(r["seconds"] for r in hist), 1),
        "infer_rows_per_s": round(infer, 1), "peak_rss_mb": peak_rss_mb(),
        "epochs": len(hist), "best_epoch": pred.metrics_["best_epoch"],
        "epoch_seconds": [round(r["seconds"], 1) for r in hist],
        "params": sum(p.numel() for p in pred.artifact_.model.parameters()),
    }  # fmt: skip


def child(args: list[str]) -> Any:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    subprocess.run([sys.executable, __file__, *args, "--result", str(out)], check=True)
    result = json.loads(out.read_text())
    out.unlink()
    return result


COLUMNS = ["model", "task", "roc_auc", "f1", "macro_f1", "accuracy", "train_seconds",
           "epoch_seconds", "infer_rows_per_s", "peak_rss_mb"]  # fmt: skip


def markdown(rows: list[dict[str, Any]]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, list):
            return " / ".join(str(x) for x in v[:3]) + (" …" if len(v) > 3 else "")
        return str(v)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for task in TASKS:
        for r in rows:
            if r["task"] == task:
                lines.append("| " + " | ".join(cell(r.get(c)) for c in COLUMNS) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--quick", action="store_true", help="2,000 rows, 2 epochs")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--cache-dir", help=argparse.SUPPRESS)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.epochs = 2
    if args.one or args.reference:
        if args.reference:
            from reference import run

            suffix = "_quick" if args.quick else ""
            result: Any = run(load(args), Path(args.cache_dir) / f"minilm_ref{suffix}.safetensors")
        else:
            variant, task = args.one.split("@")
            result = run_variant(variant, task, args)
        args.result.write_text(json.dumps(result))
        return
    started = time.perf_counter()
    passthrough = ["--data", str(args.data), "--epochs", str(args.epochs)]
    passthrough += ["--quick"] if args.quick else []
    with tempfile.TemporaryDirectory(prefix="clothing-cache-") as cache:
        # a fresh frozen-feature cache: the first MiniLM model pays for the embeddings (epoch 1),
        # every later epoch and model reads them back
        passthrough += ["--cache-dir", cache]
        print("--- references", flush=True)
        rows = child(["--reference", *passthrough])
        for r in rows:
            print(json.dumps(r), flush=True)
        for task in args.tasks.split(","):
            for variant in args.variants.split(","):
                print(f"--- {variant} @ {task}", flush=True)
                rows.append(child(["--one", f"{variant}@{task}", *passthrough]))
                print(json.dumps(rows[-1]), flush=True)
    command = "python benchmarks/clothing/run.py" + (" --quick" if args.quick else "")
    result = {
        "command": command,
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}",
        "total_seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    suffix = "_quick" if args.quick else ""
    (args.out / f"results{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"results{suffix}.md").write_text(
        f"# Clothing reviews results\n\n`{command}` on {result['date']} ({result['machine']}), "
        f"{result['total_seconds']:.0f} s in all.\n\n{markdown(rows)}\n"
    )
    print(markdown(rows))


if __name__ == "__main__":
    main()
