"""Train a benchmark model, write its ``report.html`` and a screenshot of it as
``benchmarks/<name>/report.png`` (what a reader sees of ``polymodal report``).

    python benchmarks/reports.py avmnist    # concat fusion on the bundled AV-MNIST subset, 4 epochs
    python benchmarks/reports.py clothing   # concat, frozen MiniLM + tabular, Recommended IND, 3 epochs

Models, tables and reports go to ``--out`` (default /tmp/polymodal-reports); only the screenshot
lands in the repo. Printed: training / report seconds, test metrics and modality importance.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).resolve().parent
MAX_PNG_BYTES = 1_000_000


def _common(name: str) -> Any:
    """``benchmarks/<name>/common.py`` (both benchmarks call theirs ``common``)."""
    spec = importlib.util.spec_from_file_location(f"{name}_common", HERE / name / "common.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def avmnist_config(args: argparse.Namespace) -> dict[str, Any]:
    cfg: dict[str, Any] = _common("avmnist").config("concat", args.epochs or 4)
    data = HERE.parent / "examples" / "avmnist"  # 3,000 / 600 / 1,000 rows, unseen test speaker
    cfg["data"] = {s: str(data / f"{s}.parquet") for s in ("train", "val", "test")}
    return cfg


def clothing_config(args: argparse.Namespace) -> dict[str, Any]:
    common = _common("clothing")
    cache = args.out / "feature_cache"
    cfg: dict[str, Any] = common.config("concat", "recommended", str(cache), args.epochs or 3)
    tables = args.out / "clothing_tables"
    tables.mkdir(parents=True, exist_ok=True)
    for part, frame in common.split(pd.read_csv(common.DEFAULT_DATA)).items():
        frame.to_parquet(tables / f"{part}.parquet", index=False)
    cfg["data"] = {s: str(tables / f"{s}.parquet") for s in ("train", "val", "test")}
    return cfg


def small_png(raw: bytes) -> bytes:
    """Palette PNG (256 colours) if the screenshot is over ``MAX_PNG_BYTES``."""
    if len(raw) <= MAX_PNG_BYTES:
        return raw
    from PIL import Image

    image = Image.open(io.BytesIO(raw)).convert("RGB")
    out = io.BytesIO()
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, "PNG", optimize=True)
    return out.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("benchmark", choices=["avmnist", "clothing"])
    ap.add_argument("--out", type=Path, default=Path("/tmp/polymodal-reports"))
    ap.add_argument("--epochs", type=int, help="default: avmnist 4, clothing 3")
    ap.add_argument("--max-rows", type=int, default=2000)
    ap.add_argument("--reuse", action="store_true", help="load the model trained before in --out")
    args = ap.parse_args()
    from polymodal import Predictor
    from polymodal.evaluation.importance import importance_table
    from polymodal.evaluation.report import ReportOptions
    from polymodal.utils.browser import render

    cfg = avmnist_config(args) if args.benchmark == "avmnist" else clothing_config(args)
    model_dir = args.out / args.benchmark
    t0 = time.perf_counter()
    if args.reuse and (model_dir / "model.safetensors").exists():
        pred = Predictor.load(model_dir)
    else:
        pred = Predictor(cfg).fit(output_dir=model_dir)
    print(f"trained in {time.perf_counter() - t0:.0f} s; test metrics:")
    test = pred.metrics_["test"]
    print(json.dumps({o: {k: v for k, v in m.items() if k != "confusion_matrix"} for o, m in test.items() if isinstance(m, dict)}))  # fmt: skip
    t0 = time.perf_counter()
    pred.report(model_dir / "report.html", options=ReportOptions(max_rows=args.max_rows))
    seconds = {k: round(v, 1) for k, v in pred.report_["seconds"].items()}
    print(f"report in {time.perf_counter() - t0:.0f} s {seconds}")
    print(importance_table(pred.report_["importance"]))
    shot = model_dir / "report_full.png"
    page = render(model_dir / "report.html", shot, width=1280)
    print(f"console errors: {page.console_errors}; images: {len(page.images)}, "
          f"all decoded: {all(i['naturalWidth'] > 0 for i in page.images)}")  # fmt: skip
    target = HERE / args.benchmark / "report.png"
    target.write_bytes(small_png(shot.read_bytes()))
    print(f"wrote {target} ({target.stat().st_size / 1e6:.2f} MB, page {page.height} px tall)")


if __name__ == "__main__":
    main()
