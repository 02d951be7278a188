"""Rows with 95% bootstrap intervals, paired comparisons and the markdown of the video benchmark.

Intervals resample the test rows with replacement 2,000 times (Moving AV-MNIST: the 2,000 test
clips; arrow of time: the pieces, each scored by the fold that held its group out, a forward and
a backward copy resampled together since they share their frames). Comparisons are paired: both
methods scored on the same resamples.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

RESAMPLES = 2000
TARGETS = [  # issue 20, on 2 cores
    "Moving AV-MNIST `direction` >= 0.95 with a temporal model; frame mean-pooling <= 0.20",
    "`digit` from picture + the clip's audio above picture-only and audio-only, and >= 0.93",
    "decoding 16 frames of a clip >= 200 clips/s; an epoch of 10,000 clips with a frame CNN < 120 s",
]


def resamples(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(RESAMPLES, n))


def interval(values: np.ndarray) -> list[float]:
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [round(float(lo), 4), round(float(hi), 4)]


def accuracy_row(
    dataset: str, method: str, output: str, right: np.ndarray, idx: np.ndarray, seconds: float
) -> dict[str, Any]:
    """Test accuracy of per-unit correctness ``right`` (units x copies) with its interval."""
    per_unit = right.reshape(len(right), -1).mean(1)
    return {"dataset": dataset, "method": method, "output": output, "metric": "accuracy",
            "value": round(float(per_unit.mean()), 4), "train_seconds": round(seconds, 1),
            "ci95": interval(per_unit[idx].mean(1))}  # fmt: skip


def paired(
    dataset: str, output: str, a: str, b: str, right: dict[str, np.ndarray], idx: np.ndarray
) -> dict[str, Any]:
    """a - b accuracy on the same resamples."""
    ua = right[a].reshape(len(right[a]), -1).mean(1)
    ub = right[b].reshape(len(right[b]), -1).mean(1)
    diff = ua[idx].mean(1) - ub[idx].mean(1)
    share = float((diff > 0).mean())
    return {"dataset": dataset, "output": output, "a": a, "b": b,
            "difference": round(float(ua.mean() - ub.mean()), 4), "ci95": interval(diff),
            "share_of_resamples_a_better": round(share, 4)}  # fmt: skip


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "–"
    text = f"{row['value']:.3f}" if row["metric"] == "accuracy" else f"{row['value']}"
    return text + (f" [{row['ci95'][0]:.3f}, {row['ci95'][1]:.3f}]" if "ci95" in row else "")


def table(rows: list[dict[str, Any]], dataset: str) -> list[str]:
    got = [r for r in rows if r["dataset"] == dataset]
    methods = list(dict.fromkeys(r["method"] for r in got))
    cols = list(dict.fromkeys((r["output"], r["metric"]) for r in got))
    lines = ["| method | " + " | ".join(f"{o} {m}" for o, m in cols) + " | train s |",
             "|---" * (len(cols) + 2) + "|"]  # fmt: skip
    for m in methods:
        cells = [_cell(next((r for r in got if r["method"] == m and (r["output"], r["metric"])
                             == c), None)) for c in cols]  # fmt: skip
        seconds = max(r["train_seconds"] for r in got if r["method"] == m)
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {seconds:.0f} |")
    return lines


def markdown(doc: dict[str, Any]) -> str:
    lines = [f"# Video benchmark: `{doc['command']}`", "",
             f"{doc['date']}, {doc['machine']}; {doc['total_seconds']:.0f} s in all. Test "
             "accuracy with a 95% bootstrap interval (see README.md); `val_*` rows are validation "
             "rows taken from the training data (what choices were made on).", ""]  # fmt: skip
    for dataset in dict.fromkeys(r["dataset"] for r in doc["rows"]):
        lines += [f"## {dataset}", "", *table(doc["rows"], dataset), ""]
    if doc.get("comparisons"):
        lines += ["## Paired comparisons (a - b, same resamples)", "",
                  "| dataset | output | a | b | a - b | 95% | resamples a > b |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for c in doc["comparisons"]:
            lines.append(f"| {c['dataset']} | {c['output']} | {c['a']} | {c['b']} | "
                         f"{c['difference']:+.3f} | [{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}] | "
                         f"{c['share_of_resamples_a_better']:.3f} |")  # fmt: skip
        lines.append("")
    if doc.get("decoding"):
        lines += ["## Decoding (16 frames of a clip)", "", "```json",
                  json.dumps(doc["decoding"], indent=1), "```", ""]  # fmt: skip
    if doc.get("training_step_cost"):
        lines += ["## Training cost (a batch of 64 clips, timed, extrapolated to 10,000)", "",
                  "| method | frames | size | epoch CPU s | epoch wall s (while measured) |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for c in doc["training_step_cost"]:
            lines.append(f"| {c['method']} | {c['frames']} | {c['image_size']} | "
                         f"{c['epoch_cpu_seconds_10k']} | {c['epoch_wall_seconds_10k']} |")  # fmt: skip
        lines.append("")
    lines += ["## Targets (issue 20)", "", *(f"- {t}" for t in TARGETS), "",
              *(f"- {c}" for c in doc.get("checks", [])), ""]  # fmt: skip
    return "\n".join(lines)


def write(doc: dict[str, Any], stem: Path) -> None:
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(doc))


__all__ = ["accuracy_row", "paired", "resamples", "write"]
