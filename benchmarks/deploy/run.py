"""Deployment benchmark: what each compression method costs and gains, and how fast the server is.

1. AV-MNIST (image + audio, the benchmark's concat + modality-dropout network, full 55k training
   rows): dynamic int8, global magnitude pruning and structured pruning (each fine-tuned), and a
   distilled student (narrower CNNs) — every variant in PyTorch and ONNX Runtime, scored on the
   10k test rows (unseen speaker).
2. Clothing reviews (frozen MiniLM over Title + Review Text, plus tabular; Recommended IND):
   dynamic int8 in both runtimes, ROC-AUC on test rows.
3. The clothing models behind ``polymodal serve`` (ONNX int8 and PyTorch fp32): sequential
   single requests, then a bounded load generator on 127.0.0.1 (N requests, C concurrent),
   counting non-2xx answers.

    python benchmarks/deploy/run.py             # writes results.json and results.md here
    python benchmarks/deploy/run.py --quick     # small tables, few requests: a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from avmnist.common import AUDIO, IMAGE  # noqa: E402
from avmnist.common import config as av_config  # noqa: E402
from clothing.common import CATEGORICAL, DEFAULT_DATA, NUMERIC, TEXT, split  # noqa: E402
from clothing.common import config as cloth_config  # noqa: E402

from polymodal import Predictor  # noqa: E402
from polymodal.deploy import compress  # noqa: E402

AV_DATA = ROOT.parent / "shared" / "data" / "avmnist"
# the student: one conv block fewer per tower, half the image channels, a 32-d embedding;
# chosen by tune_student.py on a speaker-held-out validation split (see README.md)
STUDENT = {"image": {"type": "image_cnn", "channels": [8, 16], "out_dim": 32, "pool": "flatten"},
           "audio": {"type": "audio_cnn", "channels": [8, 16], "out_dim": 32, "pool": "freq"}}  # fmt: skip


def student_config(epochs: int) -> dict[str, Any]:
    cfg = av_config("concat", epochs, modality_dropout=0.3)
    cfg["inputs"] = [{**IMAGE, "encoder": STUDENT["image"]}, {**AUDIO, "encoder": STUDENT["audio"]}]
    return cfg


def _tables(args: argparse.Namespace) -> dict[str, pd.DataFrame]:
    """AV-MNIST tables (the heads of each in quick mode); audio paths are relative to AV_DATA."""
    sizes = {"train": 3000, "val": 500, "test": 1000} if args.quick else {}
    return {
        k: pd.read_parquet(AV_DATA / f"{k}.parquet").head(sizes.get(k, 10**9))
        for k in ("train", "val", "test")
    }


def avmnist_rows(work: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    t = _tables(args)
    teacher = work / "avmnist"
    cfg = av_config("concat", args.av_epochs, modality_dropout=0.3)
    t0 = time.perf_counter()
    Predictor(cfg).fit(t["train"], val=t["val"], base_dir=AV_DATA).save(teacher)
    print(f"avmnist teacher trained in {time.perf_counter() - t0:.0f}s", flush=True)
    student = work / "student.json"
    student.write_text(json.dumps(student_config(args.av_epochs)))
    jobs: list[tuple[str, dict[str, Any]]] = [
        ("int8", {}),
        ("prune", {"pruning": "magnitude", "amount": 0.5, "epochs": 1}),
        ("prune", {"pruning": "structured", "amount": 0.5, "epochs": 2}),
        ("distill", {"student": student, "kd_temperature": 2.0, "kd_alpha": 0.5}),
    ]
    return _compress_all(teacher, work, jobs, t, AV_DATA, "avmnist_concat", args)


def _compress_all(
    model: Path, work: Path, jobs: list[tuple[str, dict[str, Any]]],
    tables: dict[str, pd.DataFrame], base_dir: Path, name: str, args: argparse.Namespace,
) -> list[dict[str, Any]]:  # fmt: skip
    rows: list[dict[str, Any]] = []
    for i, (method, options) in enumerate(jobs):
        t0 = time.perf_counter()
        result = compress(model, work / f"{name}_{i}", method, tables["test"], train=tables["train"],
                          val=tables["val"], repeats=args.repeats, base_dir=base_dir,
                          **options)  # fmt: skip
        seconds = round(time.perf_counter() - t0, 1)
        for r in result["rows"]:
            if r["variant"].startswith("original") and i > 0:
                continue  # the original is measured with every method; keep its first rows
            rows.append({"model": name, **r, "compress_seconds": seconds,
                         "details": result.get("details")})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    return rows


def clothing_rows(work: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    frames = split(pd.read_csv(args.clothing))
    if args.quick:
        frames = {k: v.head(n) for (k, v), n in zip(frames.items(), (1500, 300, 300), strict=True)}
    frames["test"] = frames["test"].head(args.clothing_test_rows)
    frames["test"].to_parquet(work / "clothing_test.parquet")  # the load test's request rows
    cfg = cloth_config("concat", "recommended", str(work / "cache"), epochs=args.clothing_epochs)
    Predictor(cfg).fit(frames["train"], val=frames["val"]).save(work / "clothing")
    jobs: list[tuple[str, dict[str, Any]]] = [("int8", {})]
    return _compress_all(work / "clothing", work, jobs, frames, Path.cwd(), "clothing_minilm", args)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _load(url: str, bodies: list[dict[str, Any]], n: int, concurrency: int) -> dict[str, Any]:
    """``n`` one-row requests from ``concurrency`` workers; latency per request, rows/s overall."""
    import httpx2 as httpx

    times: list[float] = []
    non_2xx = 0
    queue = iter(range(n))

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal non_2xx
        for i in queue:
            t0 = time.perf_counter()
            res = await client.post(url, json={"rows": [bodies[i % len(bodies)]]})
            times.append((time.perf_counter() - t0) * 1000)
            non_2xx += not 200 <= res.status_code < 300

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"p50_ms": round(float(np.percentile(times, 50)), 2),
            "p99_ms": round(float(np.percentile(times, 99)), 2),
            "rows_per_s": round(n / wall, 1), "non_2xx": non_2xx}  # fmt: skip


@contextlib.contextmanager
def serving(model_dir: Path, backend: str, *options: str) -> Iterator[str]:
    """``polymodal serve MODEL_DIR`` on a free port, healthy and warmed up: yields its URL."""
    import httpx2 as httpx

    port = _free_port()
    cmd = [sys.executable, "-m", "polymodal", "serve", str(model_dir), "--backend", backend,
           "--port", str(port), *options]  # fmt: skip
    server = subprocess.Popen(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(30)


def serve_one(
    model_dir: Path, backend: str, bodies: list[dict[str, Any]], args: argparse.Namespace
) -> list[dict[str, Any]]:
    with serving(model_dir, backend) as url:
        asyncio.run(_load(url + "/predict", bodies, 50, 1))  # warm-up
        out = []
        for n, conc in ((args.single, 1), (args.requests, args.concurrency)):
            stats = asyncio.run(_load(url + "/predict", bodies, n, conc))
            out.append({"model": model_dir.name, "backend": backend, "requests": n,
                        "concurrency": conc, **stats})  # fmt: skip
            print(json.dumps(out[-1]), flush=True)
        return out


def markdown(rows: list[dict[str, Any]], cols: list[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--clothing", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--av-epochs", type=int, default=4)
    ap.add_argument("--clothing-epochs", type=int, default=4)
    ap.add_argument("--clothing-test-rows", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=300, help="batch-1 calls timed per variant")
    ap.add_argument("--single", type=int, default=300, help="sequential single requests")
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    if args.quick:
        args.av_epochs, args.clothing_epochs, args.repeats = 1, 1, 30
        args.single, args.requests, args.clothing_test_rows = 30, 200, 200
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="polymodal-deploy-") as tmp:
        work = Path(tmp)
        table = avmnist_rows(work, args) + clothing_rows(work, args)
        test = pd.read_parquet(work / "clothing_test.parquet")
        cols = TEXT + NUMERIC + CATEGORICAL
        bodies = [{k: (None if pd.isna(v) else v) for k, v in rec.items()}
                  for rec in test[cols].to_dict("records")]  # fmt: skip
        serving = serve_one(work / "clothing_minilm_0", "onnx", bodies, args)
        serving += serve_one(work / "clothing", "torch", bodies, args)
    write(table, serving, args, time.perf_counter() - started)


def write(
    table: list[dict[str, Any]], serving: list[dict[str, Any]], args: argparse.Namespace,
    seconds: float,
) -> None:  # fmt: skip
    cmd = "python benchmarks/deploy/run.py" + (" --quick" if args.quick else "")
    result = {"command": cmd, "date": dt.date.today().isoformat(),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
              "total_seconds": round(seconds, 1), "compression": table, "serving": serving}  # fmt: skip
    name = "results_quick" if args.quick else "results"
    (HERE / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    ccols = ["model", "variant", "size_mb", "params", "nonzero_params", "p50_ms", "p99_ms",
             "batch64_rows_per_s", "metric_name", "metric", "metric_delta"]  # fmt: skip
    scols = ["model", "backend", "requests", "concurrency", "p50_ms", "p99_ms", "rows_per_s",
             "non_2xx"]  # fmt: skip
    (HERE / f"{name}.md").write_text(
        f"# Deployment results\n\n`{cmd}` on {result['date']} ({result['machine']}), "
        f"{seconds:.0f} s in all.\n\n## Compression\n\n{markdown(table, ccols)}\n\n"
        f"## Serving (clothing model)\n\n{markdown(serving, scols)}\n"
    )


if __name__ == "__main__":
    main()
