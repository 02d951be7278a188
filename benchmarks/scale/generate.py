"""Synthetic tables for the scale benchmark, written as Parquet chunk by chunk (never whole in
memory): text + numeric + categorical columns, optionally a small PNG per row, and a 5-class
``label`` that every modality hints at (none gives it alone).

Chunk ``i`` is drawn from seed ``(seed, i)``, so the 100k table is the first 100k rows of the 1M
one and any size is reproducible.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

CHUNK = 8192  # rows per chunk = per Parquet row group
CLASSES = 5
VOCAB = [f"w{i}" for i in range(5000)]
SIGNATURE = [[f"c{k}s{j}" for j in range(20)] for k in range(CLASSES)]  # class-specific words


def chunk(rows: int, rng: np.random.Generator, images: bool) -> pd.DataFrame:
    label = rng.integers(0, CLASSES, rows)
    zipf = np.minimum(rng.zipf(1.3, (rows, 10)), len(VOCAB)) - 1
    hint = rng.random(rows) < 0.5  # half the texts carry one word of their class
    texts = []
    for r in range(rows):
        words = [VOCAB[i] for i in zipf[r]]
        if hint[r]:
            words.insert(int(rng.integers(0, 10)), SIGNATURE[label[r]][int(rng.integers(0, 20))])
        texts.append(" ".join(words))
    noisy = np.where(rng.random(rows) < 0.5, label, rng.integers(0, CLASSES, rows))
    frame = pd.DataFrame(
        {
            "text": texts,
            "x0": label * 0.5 + rng.normal(size=rows),
            "x1": rng.normal(size=rows),
            "x2": rng.exponential(size=rows),
            "x3": rng.uniform(size=rows),
            "shop": [f"shop{v}" for v in noisy * 2 + rng.integers(0, 2, rows)],
            "city": [f"city{v}" for v in rng.integers(0, 100, rows)],
            "item": [f"item{v}" for v in rng.integers(0, 1000, rows)],
            "label": [f"class{v}" for v in label],
        }
    )
    if images:
        frame["image"] = [png(int(y), rng) for y in label]
    return frame


def png(label: int, rng: np.random.Generator) -> bytes:
    """A 32x32 grey image: a bright bar whose row tells the class, under noise."""
    pixels = rng.integers(0, 120, (32, 32)).astype(np.uint8)
    row = 3 + 6 * label + int(rng.integers(-1, 2))
    pixels[row : row + 3, 4:28] = 220
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def write_table(path: Path, rows: int, seed: int, images: bool = False) -> Path:
    """Write ``rows`` rows to ``path`` (skipped when a complete file is already there)."""
    if path.exists() and pq.ParquetFile(path).metadata.num_rows == rows:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    writer = None
    for i, start in enumerate(range(0, rows, CHUNK)):
        part = chunk(min(CHUNK, rows - start), np.random.default_rng([seed, i]), images)
        table = pa.Table.from_pandas(part, preserve_index=False)
        writer = writer or pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table, row_group_size=CHUNK)
    assert writer is not None
    writer.close()
    tmp.replace(path)
    return path
