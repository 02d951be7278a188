"""A distilled text student of the clothing model (issue 21, item 2): fewer MiniLM blocks.

The teacher is the deploy benchmark's clothing model (frozen all-MiniLM-L6-v2 on the review and
its title, numeric and categorical columns, concat fusion, 4 epochs). Each student is the same
model with only some of MiniLM's six blocks (``keep_layers``: DistilBERT's recipe, the kept
blocks start from the teacher's weights, which for a frozen teacher are the pretrained ones),
trained by ``polymodal.deploy.compress(method="distill")`` on the teacher's soft targets and
the labels; a student named ``*_ft`` also trains its kept blocks (small learning rate, no
feature cache, fewer epochs). The student is then quantised (``method="int8"``). Every latency
is batch 1, one row at a time as served, in this process and on the same test rows as the
teacher's; the student is chosen on the validation split (ROC-AUC), never on test.

    python benchmarks/deploy/text_student.py                 # writes results_text_student.*
    python benchmarks/deploy/text_student.py --quick         # 1,500 rows, 1 epoch: a smoke run
    python benchmarks/deploy/text_student.py --latency-only  # the built models' batch-1 latency
                                                             # again, interleaved (see README)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from clothing.common import DEFAULT_DATA, split  # noqa: E402
from clothing.common import config as cloth_config  # noqa: E402

from polymodal.api import Predictor  # noqa: E402
from polymodal.deploy import compress  # noqa: E402

STUDENTS = {"blocks_1_3_5": [1, 3, 5], "blocks_2_5": [2, 5], "blocks_2_5_ft": [2, 5],
            "block_0_ft": [0]}  # fmt: skip
# "_ft": the kept blocks also train (on the teacher's soft targets and the labels) at a small
# learning rate, DistilBERT-style; no feature cache then, so fewer epochs (CPU time)
FINE_TUNE_LR, FINE_TUNE_EPOCHS = 1e-4, 2


def student_config(name: str, epochs: int, cache: str) -> dict[str, Any]:
    tuned = name.endswith("_ft")
    cfg = cloth_config("concat", "recommended", cache,
                       epochs=min(epochs, FINE_TUNE_EPOCHS) if tuned else epochs)  # fmt: skip
    encoder = {**cfg["inputs"][0]["encoder"], "keep_layers": STUDENTS[name]}
    if tuned:
        encoder |= {"train_top_layers": len(STUDENTS[name])}  # every kept block
        cfg["trainer"]["pretrained_lr"] = FINE_TUNE_LR
    cfg["inputs"][0]["encoder"] = encoder
    return cfg


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    frames = split(pd.read_csv(args.data))
    if args.quick:
        frames = {k: v.head(n) for (k, v), n in zip(frames.items(), (1500, 300, 300), strict=True)}
    frames["test"] = frames["test"].head(args.test_rows)
    work = Path(args.work)
    teacher = work / ("teacher_quick" if args.quick else "teacher")
    if not (teacher / "model.safetensors").exists():
        cfg = cloth_config("concat", "recommended", args.cache, epochs=args.epochs)
        Predictor(cfg).fit(frames["train"], val=frames["val"]).save(teacher)
    common = {"repeats": args.repeats, "base_dir": Path.cwd()}
    rows: list[dict[str, Any]] = []
    for name in args.students.split(","):
        t0 = time.perf_counter()
        out = work / name
        cfg = student_config(name, args.epochs, args.cache)
        result = compress(teacher, out, "distill", frames["test"], train=frames["train"],
                          val=frames["val"], student=cfg, **common)  # fmt: skip
        val_auc = json.loads((out / "metrics.json").read_text())["val"]["Recommended IND"]
        extra = {"student": name, "keep_layers": STUDENTS[name], "val_roc_auc": val_auc["roc_auc"],
                 "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
        rows += [{**r, **extra} for r in result["rows"]]
        int8 = compress(out, work / f"{name}_int8", "int8", frames["test"], **common)
        rows += [{**r, **extra, "variant": "student_" + r["variant"]}
                 for r in int8["rows"] if r["variant"].startswith("int8")]  # fmt: skip
        for r in rows[-6:]:
            print(json.dumps(r), flush=True)
    return rows


def latencies(args: argparse.Namespace, rounds: int = 5) -> list[dict[str, Any]]:
    """Batch-1 p50 of every model built by :func:`run` (teacher and students, PyTorch fp32 and
    ONNX; the students' int8 ONNX), measured in rounds that take the models in turn, so that a
    change of load on a shared machine hits all of them alike; the median of the rounds' p50s."""
    import numpy as np

    from polymodal.compression.measure import latency
    from polymodal.export.artifact import load_artifact
    from polymodal.export.onnx import OnnxModel, export_checked, table_batch, text_inputs

    frames = split(pd.read_csv(args.data))
    test = frames["test"].head(args.test_rows)
    work = Path(args.work)
    runners: dict[str, Any] = {}
    singles: dict[str, list[Any]] = {}
    for name in ["teacher", *args.students.split(",")]:
        art = load_artifact(work / name)
        one = [table_batch(art.pipeline, (test.iloc[[i]], Path.cwd(), "test"), 1)
               for i in range(64)]  # fmt: skip
        runners[f"{name}_torch"], singles[f"{name}_torch"] = art.model, one
        onnx = work / name / "model.onnx"
        if not onnx.exists():  # the teacher's was written to a temporary folder
            batch = table_batch(art.pipeline, (test, Path.cwd(), "test"), 64)
            export_checked(art.model, batch, onnx, text_inputs(art.config))
        runners[f"{name}_onnx"] = OnnxModel(onnx)
        singles[f"{name}_onnx"] = one
        if name != "teacher":
            runners[f"{name}_int8_onnx"] = OnnxModel(work / f"{name}_int8" / "model.onnx")
            singles[f"{name}_int8_onnx"] = one
    p50: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(rounds):
        for key, run in runners.items():
            p50[key].append(latency(run, singles[key], args.repeats // rounds)["p50_ms"])
    teacher = float(np.median(p50["teacher_torch"]))
    return [{"model": k, "p50_ms_median_of_rounds": round(float(np.median(v)), 3),
             "p50_ms_rounds": v, "speedup_vs_teacher_torch_fp32":
             round(teacher / float(np.median(v)), 2)} for k, v in p50.items()]  # fmt: skip


def markdown(rows: list[dict[str, Any]]) -> str:
    cols = ["student", "variant", "size_mb", "p50_ms", "p99_ms", "batch64_rows_per_s",
            "metric", "metric_delta", "val_roc_auc", "speedup_vs_teacher_torch_fp32"]  # fmt: skip
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--work", default="/tmp/polymodal_text_student")
    ap.add_argument("--cache", default="/tmp/polymodal_text_student/cache")
    ap.add_argument("--students", default=",".join(STUDENTS))
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--test-rows", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(HERE / "results_text_student"))
    ap.add_argument("--latency-only", action="store_true")
    args = ap.parse_args()
    if args.latency_only:
        rows = latencies(args)
        for r in rows:
            print(json.dumps(r), flush=True)
        Path(args.out + "_latency.json").write_text(
            json.dumps(
                {
                    "command": "python benchmarks/deploy/text_student.py --latency-only",
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "rows": rows,
                },
                indent=1,
            )
        )
        return
    if args.quick:
        args.epochs, args.repeats, args.test_rows = 1, 30, 300
    t0 = time.perf_counter()
    rows = run(args)
    teacher = {r["student"]: r["p50_ms"] for r in rows if r["variant"] == "original_torch"}
    for r in rows:
        r["speedup_vs_teacher_torch_fp32"] = round(teacher[r["student"]] / r["p50_ms"], 2)
    command = "python benchmarks/deploy/text_student.py" + (" --quick" if args.quick else "")
    doc = {"command": command, "date": time.strftime("%Y-%m-%d"),
           "seconds": round(time.perf_counter() - t0), "rows": rows}  # fmt: skip
    Path(args.out + ".json").write_text(json.dumps(doc, indent=1))
    Path(args.out + ".md").write_text(
        f"# Distilled text student (clothing)\n\n`{command}` on {doc['date']}, "
        f"{doc['seconds']} s.\n\n{markdown(rows)}\n"
    )


if __name__ == "__main__":
    main()
