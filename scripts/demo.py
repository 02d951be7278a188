"""The demo: train image-only, audio-only and fused models on the bundled AV-MNIST subset and
print their test metrics side by side.   python scripts/demo.py  (or `make demo`)"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import yaml

from polymodal import Predictor

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "avmnist"


def variant(base: dict, inputs: list[str], fusion: dict | None) -> dict:
    cfg = yaml.safe_load(yaml.safe_dump(base))
    cfg["inputs"] = [i for i in cfg["inputs"] if i["name"] in inputs]
    cfg["fusion"] = fusion or {"type": "concat"}
    for key in ("train", "val", "test"):
        cfg["data"][key] = str(DATA / cfg["data"][key])
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--output", type=Path, default=ROOT / "runs" / "demo")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    base = yaml.safe_load((DATA / "config.yaml").read_text())
    if args.epochs:
        base["trainer"]["epochs"] = args.epochs
    runs = {
        "image only": variant(base, ["image"], None),
        "audio only": variant(base, ["audio"], None),
        f"image+audio ({base['fusion']['type']})": variant(
            base, ["image", "audio"], base["fusion"]
        ),
    }
    rows = []
    for name, cfg in runs.items():
        print(f"\n=== {name} ===")
        t0 = time.perf_counter()
        pred = Predictor(cfg).fit(output_dir=args.output / name.split()[0].replace("+", "_"))
        test = pred.metrics_["test"]["label"]
        rows.append((name, test["accuracy"], test["macro_f1"], time.perf_counter() - t0))
    print("\nAV-MNIST demo, test split (unseen speaker):")
    print(f"{'model':28s} {'accuracy':>9s} {'macro_f1':>9s} {'seconds':>8s}")
    for name, acc, f1, sec in rows:
        print(f"{name:28s} {acc:9.4f} {f1:9.4f} {sec:8.1f}")
    print(f"\nmodels saved under {args.output}")


if __name__ == "__main__":
    main()
