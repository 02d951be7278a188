"""Benchmark rows, 95% bootstrap intervals and the markdown table of the time-series benchmark.

Intervals resample the test rows (recordings; on watch all 112, each scored by the fold that held
it out) with replacement, 2,000 times; window accuracy is recomputed over the windows of the
resampled recordings (a cluster bootstrap: windows of one recording are not independent).
Comparisons are paired: both methods scored on the same resamples.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

RESAMPLES = 2000
TARGETS = {  # issue 19: best polymodal model
    "watch": {"window_accuracy": 0.90, "recording_accuracy": 0.95},
    "JapaneseVowels": {"accuracy": 0.98},
    "SelfRegulationSCP1": {"accuracy": 0.90},
}


def pooled(outcomes: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Folds joined: per test row, right or wrong, and its windows right / in all."""
    rows, right, total = [], [], []
    for out in outcomes:
        n = len(out["rows"])
        rows.append(out["rows"].astype(float))
        right.append(np.bincount(out["window_row"], out["windows"].astype(float), minlength=n))
        total.append(np.bincount(out["window_row"], minlength=n).astype(float))
    return {"rows": np.concatenate(rows), "right": np.concatenate(right),
            "total": np.concatenate(total)}  # fmt: skip


def scores(p: dict[str, np.ndarray], idx: np.ndarray | None = None) -> dict[str, float]:
    idx = np.arange(len(p["rows"])) if idx is None else idx
    return {"recording": float(p["rows"][idx].mean()),
            "window": float(p["right"][idx].sum() / p["total"][idx].sum())}  # fmt: skip


def samples(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(RESAMPLES, n))


def interval(values: list[float]) -> list[float]:
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [round(float(lo), 4), round(float(hi), 4)]


def summarise(
    dataset: str, results: dict[str, list[dict[str, Any]]], windowed: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Result rows (accuracies with intervals, speeds, validation scores) and the paired
    comparisons that matter on this dataset."""
    pools = {m: pooled(outs) for m, outs in results.items()}
    n = len(next(iter(pools.values()))["rows"])
    idx = samples(n)
    rows: list[dict[str, Any]] = []
    for method, outs in results.items():
        p = pools[method]
        boot = [scores(p, i) for i in idx]
        base = {"dataset": dataset, "method": method,
                "train_seconds": round(sum(o["train_seconds"] for o in outs), 1)}  # fmt: skip
        if all("chosen" in o for o in outs):  # the encoder validation chose, fold by fold
            base["chosen"] = [o["chosen"] for o in outs]
        metrics = [("recording_accuracy", "recording"), ("window_accuracy", "window")]
        for metric, key in metrics if windowed else [("accuracy", "recording")]:
            rows.append({**base, "metric": metric, "value": round(scores(p)[key], 4),
                         "ci95": interval([b[key] for b in boot])})  # fmt: skip
        for metric in ("infer_rows_per_s", "infer_windows_per_s")[: 2 if windowed else 1]:
            rows.append({**base, "metric": metric,
                         "value": round(float(np.mean([o[metric] for o in outs])), 1)})  # fmt: skip
        if all("val" in o for o in outs):
            for metric in ("accuracy", "window_accuracy")[: 2 if windowed else 1]:
                value = float(np.mean([o["val"][metric] for o in outs]))
                rows.append({**base, "metric": f"val_{metric}", "value": round(value, 4)})
    return rows, comparisons(dataset, pools, idx, windowed)


def comparisons(
    dataset: str, pools: dict[str, dict[str, np.ndarray]], idx: np.ndarray, windowed: bool
) -> list[dict[str, Any]]:
    """Paired differences: the best method (by recording accuracy) against each other one;
    polymodal's MiniRocket against the scikit-learn reference; on watch the fused model against
    its signal-only encoder (and the reference with side against the reference)."""
    key = "recording"
    ranked = sorted(  # "selected" repeats other rows: left out here
        (m for m in pools if m != "selected"), key=lambda m: scores(pools[m])[key], reverse=True
    )
    pairs = [(ranked[0], m) for m in ranked[1:]]  # the best against each other method
    pairs.append(("minirocket", "minirocket_sklearn_ridge"))
    fused = [m for m in pools if m.endswith("+side") and not m.startswith("minirocket_sk")]
    for m in fused:
        pairs.append((m, m.removesuffix("+side")))
    if "minirocket_sklearn_ridge+side" in pools:
        pairs.append(("minirocket_sklearn_ridge+side", "minirocket_sklearn_ridge"))
    out = []
    for a, b in dict.fromkeys(pairs):
        if a not in pools or b not in pools:
            continue
        for key in ("recording", "window") if windowed else ("recording",):
            diff = [scores(pools[a], i)[key] - scores(pools[b], i)[key] for i in idx]
            point = scores(pools[a])[key] - scores(pools[b])[key]
            out.append({"dataset": dataset, "a": a, "b": b, "metric": f"{key}_accuracy",
                        "difference": round(point, 4), "ci95": interval(diff)})  # fmt: skip
    return out


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return ""
    text = f"{row['value']:.3f}" if "accuracy" in row["metric"] else f"{row['value']:,.1f}"
    return text + (f" [{row['ci95'][0]:.3f}, {row['ci95'][1]:.3f}]" if "ci95" in row else "")


def markdown(doc: dict[str, Any]) -> str:
    lines = [f"# Time-series benchmark: `{doc['command']}`", "",
             f"{doc['date']}; {doc['total_seconds']:.0f} s in all. Accuracy with a 95% "
             "bootstrap interval over the test recordings (see README.md).", ""]  # fmt: skip
    if doc.get("unfinished"):
        lines += [f"**Unfinished run** ({doc['unfinished']}).", ""]
    for dataset in dict.fromkeys(r["dataset"] for r in doc["rows"]):
        got = [r for r in doc["rows"] if r["dataset"] == dataset and r["train_seconds"] is not None]
        speed = [r for r in doc["rows"] if r["dataset"] == dataset and r["train_seconds"] is None]
        methods = list(dict.fromkeys(r["method"] for r in got))
        metrics = list(dict.fromkeys(r["metric"] for r in got))
        lines += [f"## {dataset}", "", "| method | " + " | ".join(metrics) + " | train s |",
                  "|---" * (len(metrics) + 2) + "|"]  # fmt: skip
        for m in methods:
            cells = [_cell(next((r for r in got if r["method"] == m and r["metric"] == k), None))
                     for k in metrics]  # fmt: skip
            first = next(r for r in got if r["method"] == m)
            name = m + (f" ({', '.join(first['chosen'])})" if "chosen" in first else "")
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {first['train_seconds']:.1f} |")
        lines.append("")
        for r in speed:
            lines += [f"{r['method']} transform alone, {r['metric']}: {r['value']:,.0f} "
                      f"({r['windows']} windows of 6 x 200, {r['features']} features)", ""]  # fmt: skip
        target = TARGETS.get(dataset, {})
        if target:
            lines += ["Targets (issue 19): " + ", ".join(f"{k} >= {v}" for k, v in target.items()),
                      ""]  # fmt: skip
    lines += ["## Paired comparisons (a - b)", "", "| dataset | a | b | metric | a - b | 95% |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for c in doc["comparisons"]:
        lines.append(f"| {c['dataset']} | {c['a']} | {c['b']} | {c['metric']} | "
                     f"{c['difference']:+.3f} | [{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}] |")  # fmt: skip
    return "\n".join(lines) + "\n"


def write(doc: dict[str, Any], json_path: Path, md_path: Path) -> None:
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    md_path.write_text(markdown(doc))


__all__ = ["markdown", "summarise", "write"]
