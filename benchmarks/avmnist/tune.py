"""Choose AV-MNIST settings on a speaker-held-out validation split, never on the test split.

The official validation rows reuse the training speakers' clips, so they cannot tell whether a
model will hold up on an unseen voice (the test speaker). Here the training table is split by the
speaker named in each audio file (FSDD names clips ``{digit}_{speaker}_{take}.wav``): two
training speakers train, the third validates. Each variant is a late-fusion (product) model, which
gives three numbers in one run: the fused accuracy and, by masking one modality, each expert's.

    python benchmarks/avmnist/tune.py --holdout theo --rows 20000 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import AUDIO, IMAGE, config, trainer  # noqa: E402

DEFAULT_DATA = HERE.parents[1].parent / "shared" / "data" / "avmnist"


def variants() -> dict[str, dict[str, Any]]:
    """Name -> overrides (head kwargs, audio preprocessing / encoder, fusion, modality dropout)."""
    plain = {"head": {"label_smoothing": 0.0}}
    no_spec = {"audio": {"specaugment": False}}
    return {
        "base": {},  # the benchmark's settings (common.py)
        "no_label_smoothing": plain,
        "no_specaugment": no_spec,
        "neither": {**plain, **no_spec},
        "global_pools": {"image_encoder": {"pool": "global"}, "audio_encoder": {"pool": "global"}},
        "concat": {"fusion": {"type": "concat"}},
        "concat+moddrop": {"fusion": {"type": "concat"}, "modality_dropout": 0.3},
        "attention+moddrop": {"fusion": {"type": "attention"}, "modality_dropout": 0.3},
    }


def build(over: dict[str, Any], epochs: int) -> dict[str, Any]:
    out = config("late_product", epochs)["outputs"][0]
    audio = {
        **AUDIO,
        "encoder": {**AUDIO["encoder"], **over.get("audio_encoder", {})},
        "preprocessing": {**AUDIO["preprocessing"], **over.get("audio", {})},
    }
    image = {**IMAGE, "encoder": {**IMAGE["encoder"], **over.get("image_encoder", {})}}
    return {
        "inputs": [image, audio],
        "fusion": over.get("fusion", {"type": "late", "rule": "product"}),
        "outputs": [{**out, "head": {**out["head"], **over.get("head", {})}}],
        "trainer": trainer(epochs, over.get("modality_dropout", 0.0)),
    }


def speaker(frame: pd.DataFrame) -> pd.Series:
    return frame["audio"].str.extract(r"\d+_([A-Za-z]+)_\d+")[0]


def main() -> None:
    from polymodal import Predictor

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--holdout", default="theo", help="training speaker used for validation")
    ap.add_argument("--rows", type=int, default=20000, help="training rows (subsample)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--variants", default=",".join(variants()))
    args = ap.parse_args()
    table = pd.read_parquet(args.data / "train.parquet")
    held = speaker(table) == args.holdout
    train = table[~held].sample(min(args.rows, int((~held).sum())), random_state=0)
    val = table[held].sample(min(5000, int(held.sum())), random_state=0)
    for name in args.variants.split(","):
        cfg = build(variants()[name], args.epochs)
        pred = Predictor(cfg).fit(train, val=val, base_dir=args.data)
        rob = pred.robustness(val, noise_levels=(), base_dir=args.data)
        row: dict[str, Any] = {"variant": name}
        for r in rob["rows"]:
            if r["condition"] == "missing":
                row[f"{'audio' if r['modality'] == 'image' else 'image'}_only"] = r["label"]
        row["fused"] = pred.evaluate(val, base_dir=args.data)["label"]["accuracy"]
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
