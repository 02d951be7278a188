"""Arrow of time on the real footage of ``../shared/data/video``: 16-frame pieces played forwards
or backwards, as folders of PNG frames (lossless, so re-encoding adds no cue of its own).

Every frame of every clip is decoded by the ``video`` input's reader (64x64 grey, shorter side
scaled then centre-cropped); a piece takes every 2nd frame over 31 frames (more motion per step
than consecutive frames), pieces start every 8 frames; each piece is written twice, forwards
(label ``forward``) and reversed (``backward``), so both classes hold exactly the same frames and
a model that ignores frame order (mean pooling) is right on one of each pair: 0.5.

The two carphone clips are one sequence (pristine and distorted): they form one group, so
leave-one-group-out never trains on the picture it tests on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from polymodal.data.preprocess.video_io import Sampling, converter

FOOTAGE = ("bigbuckbunny.mp4", "bikes.mp4", "box.mp4", "carphone_distorted.mp4",
           "carphone_pristine.mp4", "cup.mp4", "tree.avi", "vtest.avi")  # fmt: skip
SIZE, LENGTH, STEP, HOP = 64, 16, 2, 8  # frame side, frames a piece, frame step, piece starts


def group_of(name: str) -> str:
    return "carphone" if name.startswith("carphone") else Path(name).stem


def all_frames(path: Path) -> np.ndarray:
    """(N, SIZE, SIZE) uint8: every frame the decoder gives, scaled and cropped by the ``video``
    input's converter (FFmpeg area scaling, shorter side to SIZE, centre crop). Not through
    ``read_clip``: sampling every frame of box.mp4 hits its last packet, which decodes to no
    frame, and the reader then refuses the clip."""
    import av

    convert = converter(Sampling(1, None, SIZE, 1, "crop"))
    with av.open(str(path)) as container:
        frames = [convert(f)[..., 0] for f in container.decode(video=0)]
    return np.stack(frames)


def build(footage: Path, out: Path) -> pd.DataFrame:
    """Write the pieces under ``out`` (reused when ``out/pieces.csv`` exists) and return the
    table: ``clip`` (folder, relative to ``out``), ``forward``, ``group``, ``piece``."""
    table = out / "pieces.csv"
    if table.exists():
        return pd.read_csv(table)
    records = []
    for name in FOOTAGE:
        frames = all_frames(footage / name)
        span = (LENGTH - 1) * STEP + 1
        for start in range(0, len(frames) - span + 1, HOP):
            piece = frames[start : start + span : STEP]
            pid = f"{Path(name).stem}_{start:04d}"
            for label, order in (("forward", piece), ("backward", piece[::-1])):
                folder = out / "pieces" / f"{pid}_{label}"
                folder.mkdir(parents=True, exist_ok=True)
                for i, arr in enumerate(order):
                    Image.fromarray(arr).save(folder / f"{i:02d}.png")
                records.append({"clip": str(folder.relative_to(out)), "arrow": label,
                                "group": group_of(name), "piece": pid})  # fmt: skip
    frame = pd.DataFrame(records)
    frame.to_csv(table, index=False)
    return frame


def folds(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """(test group, validation group) per fold: every group tested once; the next group (in a
    fixed order) validates, for early stopping; the rest train."""
    groups = sorted(frame["group"].unique())
    return [(g, groups[(i + 1) % len(groups)]) for i, g in enumerate(groups)]


__all__ = ["build", "folds"]
