"""Moving AV-MNIST: real video files built from AV-MNIST (../shared/data/avmnist), seeded.

Each clip shows the row's degraded digit (28x28) moving across a 48x48 canvas for 16 frames at
16 fps, in one of 8 directions (the 8 neighbours of a pixel), with a random start and speed
(0.8-1.3 pixels a frame, so the digit stays inside); its sound track is the row's spoken digit
(the FSDD WAV, 8 kHz). Written as H.264 mp4 with AAC sound, plus one CSV per split:
``clip`` (path relative to the CSV), ``digit`` (10 classes), ``direction`` (8 classes, which no
single frame can tell) and the row's ``source`` row in the AV-MNIST table.

    python benchmarks/video/generate.py /tmp/moving_avmnist --train-rows 10000 --test-rows 2000

Train rows come from the AV-MNIST training table, test rows from its test table (the unseen
speaker). Output goes outside the repository (clips are data, not code).
"""

from __future__ import annotations

import argparse
import io
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd
import soundfile as sf
from PIL import Image

AVMNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "avmnist"
DIRECTIONS = {  # name -> (dx, dy) per frame, in units of the clip's speed
    "E": (1, 0), "NE": (1, -1), "N": (0, -1), "NW": (-1, -1),
    "W": (-1, 0), "SW": (-1, 1), "S": (0, 1), "SE": (1, 1),
}  # fmt: skip
CANVAS, DIGIT, FRAMES, FPS = 48, 28, 16, 16
SPEED = (0.8, 1.3)  # pixels a frame along each moving axis


def path_of(direction: tuple[int, int], speed: float, rng: np.random.Generator) -> np.ndarray:
    """(FRAMES, 2) top-left corners (x, y) of the digit: a straight line inside the canvas."""
    room = CANVAS - DIGIT  # 20 pixels of travel
    travel = speed * (FRAMES - 1)
    corners = []
    for d in direction:
        lo, hi = (0.0, room - travel) if d > 0 else (travel, float(room)) if d < 0 else (0, room)
        corners.append(rng.uniform(lo, hi))
    t = np.arange(FRAMES)[:, None]
    return np.asarray(corners)[None, :] + t * speed * np.asarray(direction)[None, :]


def frames_of(digit: np.ndarray, path: np.ndarray) -> np.ndarray:
    """(FRAMES, CANVAS, CANVAS, 3) uint8: the digit pasted (brightest wins) at each corner."""
    out = np.zeros((FRAMES, CANVAS, CANVAS), dtype=np.uint8)
    for t, (x, y) in enumerate(np.rint(path).astype(int)):
        region = out[t, y : y + DIGIT, x : x + DIGIT]
        np.maximum(region, digit, out=region)
    return np.repeat(out[..., None], 3, axis=3)


def write(path: Path, frames: np.ndarray, wave: np.ndarray, rate: int) -> None:
    """H.264 video (yuv420p, every 8th frame a keyframe) with the wave as its AAC sound track."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS, options={"crf": "18", "preset": "fast"})
        video.width = video.height = CANVAS
        video.pix_fmt = "yuv420p"
        video.codec_context.gop_size = 8
        sound = out.add_stream("aac", rate=rate)
        sound.layout = "mono"
        for arr in frames:
            out.mux(video.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")))
        out.mux(video.encode())
        frame = av.AudioFrame.from_ndarray(wave[None, :].astype(np.float32), "flt", "mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=rate)
        for piece in resampler.resample(frame) + resampler.resample(None):
            out.mux(sound.encode(piece))
        out.mux(sound.encode(None))


def split(name: str, table: Path, rows: int, out: Path, seed: int) -> pd.DataFrame:
    """The first ``rows`` rows of an AV-MNIST table as clips in ``out/clips/<name>/``."""
    frame = pd.read_parquet(table).head(rows)
    rng = np.random.default_rng([seed, 0 if name == "train" else 1])
    folder = out / "clips" / name
    folder.mkdir(parents=True, exist_ok=True)
    names = list(DIRECTIONS)
    records = []
    start = time.perf_counter()
    for i, row in enumerate(frame.itertuples(index=False)):
        direction = names[int(rng.integers(len(names)))]
        speed = float(rng.uniform(*SPEED))
        digit = np.asarray(Image.open(io.BytesIO(row.image)).convert("L"))
        wave, rate = sf.read(table.parent / row.audio, dtype="float32")
        clip = folder / f"{i}.mp4"
        write(clip, frames_of(digit, path_of(DIRECTIONS[direction], speed, rng)), wave, rate)
        records.append({"clip": str(clip.relative_to(out)), "digit": int(row.label),
                        "direction": direction, "source": i})  # fmt: skip
        if i % 1000 == 999:
            print(f"{name}: {i + 1} clips, {(i + 1) / (time.perf_counter() - start):.0f}/s")
    return pd.DataFrame(records)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="output folder (outside the repository)")
    ap.add_argument("--train-rows", type=int, default=10_000)
    ap.add_argument("--test-rows", type=int, default=2_000)
    ap.add_argument("--avmnist", type=Path, default=AVMNIST)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", args.train_rows), ("test", args.test_rows)):
        table = split(name, args.avmnist / f"{name}.parquet", rows, args.out, args.seed)
        table.to_csv(args.out / f"{name}.csv", index=False)
        print(f"wrote {args.out / f'{name}.csv'}: {len(table)} clips")


if __name__ == "__main__":
    main()
