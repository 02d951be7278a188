"""Choose the distilled AV-MNIST student on a speaker-held-out validation split (never on test).

The teacher is the deploy benchmark's network (concat + modality dropout); it and every student
candidate train on two of the three training speakers and are scored on the third. Each student
is distilled from the teacher (``--alpha`` weights the soft loss) and its batch-1 latency is
measured beside the teacher's, in the same process, on the same validation rows.

    python benchmarks/deploy/tune_student.py --rows 20000 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from avmnist.common import AUDIO, IMAGE  # noqa: E402
from avmnist.common import config as av_config  # noqa: E402
from avmnist.tune import DEFAULT_DATA, speaker  # noqa: E402

CANDIDATES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "img8-16_aud4-8": (
        {"type": "image_cnn", "channels": [8, 16], "out_dim": 32, "pool": "flatten"},
        {"type": "audio_cnn", "channels": [4, 8], "out_dim": 32, "pool": "freq"},
    ),
    "img8-16_aud8-16": (
        {"type": "image_cnn", "channels": [8, 16], "out_dim": 32, "pool": "flatten"},
        {"type": "audio_cnn", "channels": [8, 16], "out_dim": 32, "pool": "freq"},
    ),
    "img4-8_aud4-8": (
        {"type": "image_cnn", "channels": [4, 8], "out_dim": 32, "pool": "flatten"},
        {"type": "audio_cnn", "channels": [4, 8], "out_dim": 32, "pool": "freq"},
    ),
}


def student(name: str, epochs: int) -> dict[str, Any]:
    image, audio = CANDIDATES[name]
    cfg = av_config("concat", epochs, modality_dropout=0.3)
    cfg["inputs"] = [{**IMAGE, "encoder": image}, {**AUDIO, "encoder": audio}]
    return cfg


def p50_ms(pred: Any, frame: pd.DataFrame, base: Path) -> float:
    from polymodal.compression.measure import latency
    from polymodal.export.onnx import table_batch

    art = pred.artifact_
    singles = [table_batch(art.pipeline, (frame.iloc[[i]], base, "val"), 1) for i in range(64)]
    return latency(art.model, singles, repeats=300)["p50_ms"]


def main() -> None:
    from polymodal import Predictor

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--holdout", default="theo", help="training speaker used for validation")
    ap.add_argument("--rows", type=int, default=20000, help="training rows (subsample)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--alphas", default="0.5,0.9")
    ap.add_argument("--candidates", default=",".join(CANDIDATES))
    args = ap.parse_args()
    table = pd.read_parquet(args.data / "train.parquet")
    held = speaker(table) == args.holdout
    train = table[~held].sample(min(args.rows, int((~held).sum())), random_state=0)
    val = table[held].sample(min(5000, int(held.sum())), random_state=0)
    teacher = Predictor(av_config("concat", args.epochs, modality_dropout=0.3))
    teacher.fit(train, val=val, base_dir=args.data)
    acc = teacher.evaluate(val, base_dir=args.data)["label"]["accuracy"]
    base_ms = p50_ms(teacher, val, args.data)
    print(json.dumps({"model": "teacher", "val_accuracy": acc, "p50_ms": base_ms}), flush=True)
    for name in args.candidates.split(","):
        for alpha in (float(a) for a in args.alphas.split(",")):
            pred = Predictor(student(name, args.epochs)).fit(
                train, val=val, base_dir=args.data, teacher=teacher, kd_alpha=alpha
            )
            row = {"model": name, "alpha": alpha,
                   "val_accuracy": pred.evaluate(val, base_dir=args.data)["label"]["accuracy"],
                   "p50_ms": p50_ms(pred, val, args.data), "teacher_p50_ms": base_ms}  # fmt: skip
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
