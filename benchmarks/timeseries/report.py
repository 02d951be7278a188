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
    dataset: str, results: dict[str, list[Any]], windowed: bool
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
    pairs.append(("minirocket_diff", "minirocket"))  # what the first difference adds
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
    for run in doc.get("runs", []):  # merged runs (run in parallel)
        lines += [f"- `{run['command']}`: {run['total_seconds']:.0f} s"]
    lines += [""] if doc.get("runs") else []
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


def merge(paths: list[Path]) -> dict[str, Any]:
    """Runs of different datasets (e.g. started in parallel with ``--datasets``) as one
    document: rows and comparisons joined, commands joined with ``&``, the longest run's time."""
    docs = [json.loads(p.read_text()) for p in paths]
    doc: dict[str, Any] = {
        "command": " & ".join(d["command"] for d in docs),
        "date": max(d["date"] for d in docs),
        "threads": docs[0].get("threads"),
        "rows": [r for d in docs for r in d["rows"]],
        "comparisons": [c for d in docs for c in d["comparisons"]],
        "total_seconds": max(d["total_seconds"] for d in docs),
        "runs": [{"command": d["command"], "total_seconds": d["total_seconds"]} for d in docs],
    }
    have = {r["dataset"] for r in doc["rows"]}
    unfinished = [  # "not yet run: X" is void when another run did X
        d["unfinished"] for d in docs if d.get("unfinished")
        and not set(d["unfinished"].removeprefix("not yet run: ").split(", ")) <= have
    ]  # fmt: skip
    if unfinished:
        doc["unfinished"] = "; ".join(unfinished)
    return doc


def pool_watch(doc: dict[str, Any], raws: list[Path]) -> dict[str, Any]:
    """Watch rows and comparisons recomputed from every fold's test outcomes
    (``*_watch_raw.json`` of runs over different folds), so intervals pool all recordings."""
    results: dict[str, list[dict[str, Any]]] = {}
    for path in raws:
        for method, outs in json.loads(path.read_text()).items():
            results.setdefault(method, []).extend(outs)
    for outs in results.values():
        outs.sort(key=lambda o: o["fold"])
        for o in outs:
            for key in ("rows", "windows", "window_row"):
                o[key] = np.asarray(o[key])
    rows, comps = summarise("watch", results, windowed=True)
    keep = [r for r in doc["rows"] if r["dataset"] != "watch" or r["train_seconds"] is None]
    doc["rows"] = rows + keep
    doc["comparisons"] = comps + [c for c in doc["comparisons"] if c["dataset"] != "watch"]
    doc["watch_folds"] = sorted({o["fold"] for outs in results.values() for o in outs})
    return doc


def main() -> None:
    """python report.py OUT_STEM RUN.json [RUN.json ...]: merge runs into OUT_STEM.json / .md;
    watch rows are pooled from the runs' RUN_watch_raw.json files where they exist."""
    import sys

    stem, *paths = sys.argv[1:]
    doc = merge([Path(p) for p in paths])
    raws = [r for p in paths if (r := Path(p.removesuffix(".json") + "_watch_raw.json")).exists()]
    if raws:
        doc = pool_watch(doc, raws)
        folds = len(doc["watch_folds"])
        notes = [n for n in doc.get("unfinished", "").split("; ") if n and "folds" not in n]
        notes += [] if folds == 4 else [f"watch: {folds} of 4 folds"]
        doc.pop("unfinished", None)
        if notes:
            doc["unfinished"] = "; ".join(notes)
    write(doc, Path(f"{stem}.json"), Path(f"{stem}.md"))


__all__ = ["markdown", "merge", "summarise", "write"]


if __name__ == "__main__":
    main()
