"""Build the bundled AV-MNIST demo subset (examples/avmnist/) from ../shared/data/avmnist.

Keeps a few hundred audio clips (so the repo stays small) and the table rows that use them:
train/val rows from the training speakers, test rows from the unseen test speaker, as upstream.
Run once; the output is committed:  python scripts/make_demo_data.py
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def pick(frame: pd.DataFrame, clips_per_digit: int, rows: int, seed: int) -> pd.DataFrame:
    clips = frame[["audio", "label"]].drop_duplicates("audio").sort_values("audio")
    keep = clips.groupby("label", group_keys=False).apply(
        lambda g: g.sample(min(clips_per_digit, len(g)), random_state=seed)
    )
    sub = frame[frame["audio"].isin(set(keep["audio"]))]
    return sub.sample(min(rows, len(sub)), random_state=seed).sort_index()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data" / "avmnist")
    ap.add_argument("--dest", type=Path, default=ROOT / "examples" / "avmnist")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    src, dest = args.source, args.dest
    (dest / "audio").mkdir(parents=True, exist_ok=True)
    train = pick(pd.read_parquet(src / "train.parquet"), 30, 3000, args.seed)
    val = pd.read_parquet(src / "val.parquet")
    val = val[val["audio"].isin(set(train["audio"]))]  # val reuses the training clips, as upstream
    val = val.sample(min(600, len(val)), random_state=args.seed).sort_index()
    test = pick(pd.read_parquet(src / "test.parquet"), 20, 1000, args.seed)
    for name, frame in (("train", train), ("val", val), ("test", test)):
        frame.reset_index(drop=True).to_parquet(dest / f"{name}.parquet", index=False)
        print(f"{name}: {len(frame)} rows, {frame['audio'].nunique()} clips")
    for rel in sorted(set(train["audio"]) | set(val["audio"]) | set(test["audio"])):
        shutil.copy2(src / rel, dest / rel)


if __name__ == "__main__":
    main()
