"""Presets measured the way a newcomer meets them: nothing but the CLI (`polymodal init`,
`polymodal fit`, `polymodal predict`), no tuned benchmark code, a fresh feature cache.

    python benchmarks/presets/run.py                       # full run: results.json / results.md
    python benchmarks/presets/run.py --quick               # small tables: a smoke run
    python benchmarks/presets/run.py --cases clothing:best,avmnist:best --no-init

Rows:
- clothing, `Recommended IND`: `polymodal fit` on the clothing benchmark's training rows
  (`benchmarks/clothing/common.py` split: its train + val, 80%) with `--test` its test rows; the
  TF-IDF + logistic-regression reference on the same rows (C chosen on a validation split).
- avmnist, `label`: `polymodal fit train.parquet --val val.parquet --test test.parquet`.
- init: `polymodal init` on every table of ../shared/data (exit code, seconds, left-out columns).
Test metrics come with 95% bootstrap intervals (1,000 resamples of the test rows) and, for the
clothing reference, the interval of the paired difference.
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
import yaml
from sklearn.metrics import roc_auc_score

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO / "benchmarks" / "clothing"))
from common import split  # noqa: E402  (the clothing benchmark's own split)

CASES = {  # dataset -> target, metric
    "clothing": ("Recommended IND", "roc_auc"),
    "avmnist": ("label", "accuracy"),
}
INIT_TABLES = [
    ("avmnist/train.parquet", "label"),
    ("clothing/reviews.csv", "Recommended IND"),
    ("clothing/reviews.csv", "Rating"),
    ("twemoji/emoji.json", "category"),
    ("watch/recordings.csv", "exercise"),
    ("watch/recordings.parquet", "exercise"),
    ("uea/JapaneseVowels/train.parquet", "label"),
    ("uea/SelfRegulationSCP1/train.parquet", "label"),
]


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, float, str]:
    """Run ``polymodal ARGS`` as a user would; (exit code, seconds, combined output)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "polymodal.cli", *args], capture_output=True, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, check=False,
    )  # fmt: skip
    return proc.returncode, time.perf_counter() - t0, proc.stdout + proc.stderr


def tables(dataset: str, work: Path, quick: bool) -> dict[str, Path]:
    """train / (val) / test tables for one dataset, written under ``work`` where they differ
    from the shared files."""
    folder = work / dataset
    folder.mkdir(parents=True, exist_ok=True)
    if dataset == "clothing":
        frame = pd.read_csv(SHARED / "clothing" / "reviews.csv")
        if quick:
            frame = frame.sample(3000, random_state=0)
        parts = split(frame)
        pd.concat([parts["train"], parts["val"]]).to_csv(folder / "train.csv", index=False)
        parts["test"].to_csv(folder / "test.csv", index=False)
        return {"train": folder / "train.csv", "test": folder / "test.csv"}
    src = SHARED / "avmnist"
    if not quick:
        return {k: src / f"{k}.parquet" for k in ("train", "val", "test")}
    out = {}
    for k, n in (("train", 5000), ("val", 1000), ("test", 1000)):
        part = pd.read_parquet(src / f"{k}.parquet").head(n)
        part["audio"] = [str(src / a) for a in part["audio"]]  # absolute: under data.roots
        part.to_parquet(folder / f"{k}.parquet")
        out[k] = folder / f"{k}.parquet"
    return out


def bootstrap(metric: Any, y: np.ndarray, *scores: np.ndarray, n: int = 1000) -> np.ndarray:
    """``metric(y, s)`` for each score array over ``n`` resamples of the rows: (n, len(scores))."""
    rng = np.random.default_rng(0)
    out = np.empty((n, len(scores)))
    for b in range(n):
        idx = rng.integers(0, len(y), len(y))
        out[b] = [metric(y[idx], s[idx]) for s in scores]
    return out


def interval(values: np.ndarray) -> list[float]:
    return [
        round(float(np.percentile(values, 2.5)), 4),
        round(float(np.percentile(values, 97.5)), 4),
    ]


def run_fit(dataset: str, preset: str, paths: dict[str, Path], work: Path) -> dict[str, Any]:
    target, metric = CASES[dataset]
    out = work / f"{dataset}_{preset}"
    args = ["fit", str(paths["train"]), "--target", target, "--preset", preset, "-o", str(out),
            "--test", str(paths["test"])]  # fmt: skip
    if "val" in paths:
        args += ["--val", str(paths["val"])]
    if paths["train"].parent != SHARED / dataset and dataset == "avmnist":  # quick subsets
        args += ["--set", f'data.roots=["{SHARED / dataset}"]']
    code, seconds, log = cli(*args, env={"POLYMODAL_CACHE_DIR": str(work / "cache")})
    (work / f"{dataset}_{preset}.log").write_text(log)
    if code != 0:
        raise SystemExit(f"polymodal fit failed ({dataset}, {preset}):\n{log[-3000:]}")
    preds = work / f"{dataset}_{preset}_test.csv"
    code, _, log = cli(
        "predict", str(out), str(paths["test"]), "-o", str(preds), "--backend", "torch"
    )
    if code != 0:
        raise SystemExit(f"polymodal predict failed:\n{log[-3000:]}")
    truth = (
        pd.read_csv(paths["test"])
        if paths["test"].suffix == ".csv"
        else pd.read_parquet(paths["test"])
    )
    pred = pd.read_csv(preds)
    metrics = json.loads((out / "metrics.json").read_text())
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    row = {"dataset": dataset, "target": target, "preset": preset, "metric": metric,
           "value": round(metrics["test"][target][metric], 4), "seconds": round(seconds, 1),
           "val_value": round(metrics["val"][target][metric], 4),
           "epochs": len(json.loads((out / "history.json").read_text())),
           "inputs": [f"{i['name']}:{(i.get('encoder') or {}).get('type', 'tied')}" for i in cfg["inputs"]],
           "dropped": sorted(cfg.get("dropped", {}))}  # fmt: skip
    y = truth[target].to_numpy()
    if metric == "roc_auc":
        positive = [c for c in pred.columns if c.startswith(f"{target}_proba_")][-1]
        scores = pred[positive].to_numpy()
        row["value_from_predictions"] = round(float(roc_auc_score(y, scores)), 4)
        row["ci95"] = interval(bootstrap(roc_auc_score, y, scores)[:, 0])
        row["_scores"] = scores
    else:
        hits = (pred[target].astype(str).to_numpy() == y.astype(str)).astype(float)
        row["ci95"] = interval(bootstrap(lambda _, s: s.mean(), hits, hits)[:, 0])
    return row


def clothing_reference(paths: dict[str, Path]) -> dict[str, Any]:
    """TF-IDF 1-2-grams of Title + Review Text, one-hot categoricals, scaled numerics ->
    logistic regression, C chosen on a seeded 10% validation part of the training rows."""
    sys.path.insert(0, str(REPO / "benchmarks" / "clothing"))
    from reference import C_GRID, features
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    target = "Recommended IND"
    train_all, test = pd.read_csv(paths["train"]), pd.read_csv(paths["test"])
    train, val = train_test_split(
        train_all, test_size=0.1, random_state=0, stratify=train_all[target]
    )
    t0 = time.perf_counter()
    x = features({"train": train, "val": val, "test": test})
    best = max(C_GRID, key=lambda c: roc_auc_score(val[target], LogisticRegression(C=c, max_iter=2000).fit(x["train"], train[target]).predict_proba(x["val"])[:, 1]))  # fmt: skip
    model = LogisticRegression(C=best, max_iter=2000).fit(x["train"], train[target])
    scores = model.predict_proba(x["test"])[:, 1]
    y = test[target].to_numpy()
    return {"dataset": "clothing", "target": target, "preset": "reference: TF-IDF + LR",
            "metric": "roc_auc", "value": round(float(roc_auc_score(y, scores)), 4),
            "seconds": round(time.perf_counter() - t0, 1), "C": best,
            "ci95": interval(bootstrap(roc_auc_score, y, scores)[:, 0]), "_scores": scores}  # fmt: skip


def init_rows(work: Path) -> list[dict[str, Any]]:
    rows = []
    for table, target in INIT_TABLES:
        path = SHARED / table
        if not path.exists():
            continue
        out = work / "init" / (table.replace("/", "_") + f".{target.replace(' ', '_')}.yaml")
        out.parent.mkdir(parents=True, exist_ok=True)
        code, seconds, log = cli("init", str(path), "--target", target, "-o", str(out))
        dropped = sorted(yaml.safe_load(out.read_text()).get("dropped", {})) if code == 0 else []
        error = next((ln for ln in log.splitlines() if ln.startswith("error:")), "")
        rows.append({"dataset": table, "target": target, "preset": "init", "metric": "exit_code",
                     "value": code, "seconds": round(seconds, 1), "dropped": dropped,
                     "error": error})  # fmt: skip
    return rows


def paired(rows: list[dict[str, Any]], y: np.ndarray) -> None:
    """Interval of (preset - reference) ROC-AUC on the same resamples, for the clothing rows."""
    ref = next((r for r in rows if r["preset"].startswith("reference")), None)
    if ref is None:
        return
    for r in rows:
        if r is not ref and "_scores" in r:
            diffs = bootstrap(roc_auc_score, y, r["_scores"], ref["_scores"])
            r["minus_reference_ci95"] = interval(diffs[:, 0] - diffs[:, 1])


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Presets: the newcomer path\n\n`{result['command']}` on {result['date']} "
             f"({result['machine']}), {result['seconds']:.0f} s in all.\n",
             "| dataset | target | preset | metric | value | 95% CI | vs reference (95% CI) | seconds | val | epochs |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in result["rows"]:
        if r["preset"] == "init":
            continue
        ci = r.get("ci95") or ["", ""]
        vs = r.get("minus_reference_ci95")
        lines.append(
            f"| {r['dataset']} | {r['target']} | {r['preset']} | {r['metric']} | {r['value']} | "
            f"{ci[0]}–{ci[1]} | {f'{vs[0]:+.4f} … {vs[1]:+.4f}' if vs else '–'} | {r['seconds']} | "
            f"{r.get('val_value', '–')} | {r.get('epochs', '–')} |"
        )
    lines += ["", "`polymodal init` on every shared table:", "",
              "| table | target | exit | seconds | left out | error |", "|---|---|---|---|---|---|"]  # fmt: skip
    for r in result["rows"]:
        if r["preset"] == "init":
            lines.append(f"| {r['dataset']} | {r['target']} | {r['value']} | {r['seconds']} | "
                         f"{', '.join(r['dropped']) or '–'} | {r['error'] or '–'} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def save(rows: list[dict[str, Any]], args: argparse.Namespace, seconds: float) -> str:
    """results.json / results.md from the rows so far (written after every case: a crash late
    in the run keeps what was measured)."""
    suffix = "_quick" if args.quick else ""
    result = {
        "command": "python benchmarks/presets/run.py " + " ".join(sys.argv[1:]),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}",
        "seconds": round(seconds, 1),
        "rows": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
    }
    (args.out / f"results{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"results{suffix}.md").write_text(markdown(result))
    return markdown(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cases", default="avmnist:best,clothing:best,avmnist:fast,clothing:fast")
    parser.add_argument("--no-init", action="store_true")
    parser.add_argument("--work", type=Path, default=Path("/tmp/polymodal-presets"))
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    clothing_y = None
    for case in args.cases.split(","):
        dataset, preset = case.split(":")
        paths = tables(dataset, args.work, args.quick)
        if dataset == "clothing" and clothing_y is None:
            rows.append(clothing_reference(paths))
            clothing_y = pd.read_csv(paths["test"])["Recommended IND"].to_numpy()
        rows.append(run_fit(dataset, preset, paths, args.work))
        print(json.dumps({k: v for k, v in rows[-1].items() if not k.startswith("_")}), flush=True)
        if clothing_y is not None:
            paired([r for r in rows if r["dataset"] == "clothing"], clothing_y)
        save(rows, args, time.perf_counter() - t0)
    if not args.no_init:
        rows += init_rows(args.work)
    print(save(rows, args, time.perf_counter() - t0))


if __name__ == "__main__":
    main()
