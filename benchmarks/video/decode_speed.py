"""Decoding speed of the ``video`` input: clips a second when sampling 16 frames of each clip of a
table (the Moving AV-MNIST CSV that ``generate.py`` writes, or any table with a video column),
in one process and split over worker processes (as DataLoader workers or streaming chunks
would). Prints one JSON line.

    python benchmarks/video/decode_speed.py /tmp/moving_avmnist/train.csv --clips 2000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from polymodal.data.preprocess.video import VideoPreprocessor

OPTIONS = {"num_frames": 16, "image_size": 48, "channels": 1}


def decode(args: tuple[list[str], str]) -> int:
    """Decode the clips of one share of the table; the number of clips read."""
    cells, folder = args
    pre = VideoPreprocessor(**OPTIONS)
    out = pre.transform(pd.DataFrame({"clip": cells}), ["clip"], Path(folder))
    return int(out.present.sum())


def rate(cells: list[str], folder: str, workers: int) -> float:
    """Clips a second over ``cells``, shared out among ``workers`` processes (started and warmed
    up before the clock starts)."""
    shares = [(cells[i::workers], folder) for i in range(workers)]
    if workers == 1:
        start = time.perf_counter()
        done = decode(shares[0])
        return _checked(done, cells, start)
    spawn = multiprocessing.get_context("spawn")  # a forked FFmpeg / torch can hang
    with ProcessPoolExecutor(workers, mp_context=spawn) as pool:
        list(pool.map(decode, [(cells[:4], folder)] * workers))  # imports, first clips
        start = time.perf_counter()
        done = sum(pool.map(decode, shares))
        return _checked(done, cells, start)


def _checked(done: int, cells: list[str], start: float) -> float:
    assert done == len(cells), f"{len(cells) - done} clips could not be read"
    return len(cells) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("table", type=Path)
    ap.add_argument("--column", default="clip")
    ap.add_argument("--clips", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    cells = pd.read_csv(args.table)[args.column].head(args.clips).tolist()
    folder = str(args.table.resolve().parent)
    decode((cells[:20], folder))  # warm-up: imports, file cache
    one = rate(cells, folder, 1)
    many = rate(cells, folder, args.workers)
    frames = OPTIONS["num_frames"]
    print(json.dumps({
        "clips": len(cells), **OPTIONS,
        "clips_per_s": round(one, 1), "frames_per_s": round(one * frames),
        f"clips_per_s_{args.workers}_workers": round(many, 1),
        f"frames_per_s_{args.workers}_workers": round(many * frames),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
