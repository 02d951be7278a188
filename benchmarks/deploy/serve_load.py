"""Micro-batching measured: one saved model behind `polymodal serve` with several batching
settings, each under the same load (issue 21), in one run so the settings meet the same machine.

For each `max_batch:max_wait_ms` setting: a fresh server, a warm-up, N sequential single-row
requests (latency of a lone request), then M single-row requests from C concurrent clients
(latency under load, rows/s, non-2xx), and the server's own /metrics (rows per computed batch).
`1:0` is the server without micro-batching (every request computed alone).

    python benchmarks/deploy/serve_load.py MODEL_DIR TABLE --backend onnx \
        --settings 1:0,64:0,64:5 --single 300 --requests 3000 --concurrency 16 --out DIR
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import _load, markdown, serving  # noqa: E402


def _metrics(url: str) -> dict[str, float]:
    """Batches computed so far, from the server's own /metrics."""
    import httpx2 as httpx

    text = httpx.get(url + "/metrics").text
    values = dict(ln.rsplit(" ", 1) for ln in text.splitlines() if ln and not ln.startswith("#"))
    return {"batches": float(values.get("polymodal_batch_rows_count", 0))}


def run_setting(
    model_dir: Path, backend: str, setting: str, bodies: list[dict[str, Any]],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:  # fmt: skip
    max_batch, max_wait = setting.split(":")
    with serving(model_dir, backend, "--max-batch", max_batch, "--max-wait-ms", max_wait) as url:
        asyncio.run(_load(url + "/predict", bodies, 50, 1))  # warm-up
        out = []
        for n, conc in ((args.single, 1), (args.requests, args.concurrency)):
            before = _metrics(url)
            stats = asyncio.run(_load(url + "/predict", bodies, n, conc))
            batches = _metrics(url)["batches"] - before["batches"]
            out.append({"setting": setting, "backend": backend, "requests": n,
                        "concurrency": conc, **stats, "batches": int(batches),
                        "mean_batch_rows": round(n / batches, 2) if batches else 0.0})  # fmt: skip
            print(json.dumps(out[-1]), flush=True)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("table", type=Path, help="rows sent as requests (their model inputs)")
    ap.add_argument("--backend", default="onnx")
    ap.add_argument("--settings", default="1:0,64:0,64:5")
    ap.add_argument("--single", type=int, default=300)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--out", type=Path, default=HERE / "serve_load")
    args = ap.parse_args()
    table = (
        pd.read_parquet(args.table) if args.table.suffix == ".parquet" else pd.read_csv(args.table)
    )
    cfg = yaml.safe_load((args.model_dir / "config.yaml").read_text())  # the model's inputs
    columns = sorted({c for i in cfg["inputs"] for c in (i.get("columns") or [i["name"]])})
    bodies = [{k: (None if pd.isna(v) else v) for k, v in rec.items()}
              for rec in table[columns].to_dict("records")]  # fmt: skip
    started = time.perf_counter()
    rows = [
        r
        for s in args.settings.split(",")
        for r in run_setting(args.model_dir, args.backend, s, bodies, args)
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"command": "python benchmarks/deploy/serve_load.py " + " ".join(sys.argv[1:]),
              "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
              "seconds": round(time.perf_counter() - started, 1), "rows": rows}  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    cols = ["setting", "backend", "requests", "concurrency", "p50_ms", "p99_ms", "rows_per_s",
            "non_2xx", "batches", "mean_batch_rows"]  # fmt: skip
    md = f"# Serving under load: micro-batching settings\n\n`{result['command']}` on {result['date']} ({result['machine']}), {result['seconds']} s.\n\n"
    (args.out / "results.md").write_text(md + markdown(rows, cols) + "\n")
    print(md + markdown(rows, cols))


if __name__ == "__main__":
    main()
