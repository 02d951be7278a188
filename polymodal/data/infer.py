"""Guess each column's modality and the target's task, and write a starter config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from polymodal.data.io import is_missing

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")
AUDIO_EXT = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"RIFF")
SAMPLE = 200


def _sample(series: pd.Series) -> list[Any]:
    return [v for v in series.head(5 * SAMPLE).tolist() if not is_missing(v)][:SAMPLE]


def infer_modality(series: pd.Series, base_dir: Path | None = None) -> str | None:
    """text | image | audio | numeric | categorical, or None for columns to skip (constant)."""
    values = _sample(series)
    if not values:
        return None
    first = values[0]
    if isinstance(first, dict) and ("bytes" in first or "path" in first):
        return "image"
    if isinstance(first, (bytes, bytearray)):
        return "audio" if bytes(first[:4]) == b"RIFF" and bytes(first[8:12]) == b"WAVE" else "image"
    if pd.api.types.is_bool_dtype(series):
        return "categorical"
    if pd.api.types.is_numeric_dtype(series):
        distinct = series.nunique(dropna=True)
        if distinct <= 1:
            return None
        integral = bool((series.dropna() % 1 == 0).all())
        return "categorical" if integral and distinct <= 10 else "numeric"
    texts = [str(v).strip() for v in values]
    lower = [t.lower() for t in texts]
    if sum(t.endswith(IMAGE_EXT) for t in lower) >= 0.8 * len(lower):
        return "image"
    if sum(t.endswith(AUDIO_EXT) for t in lower) >= 0.8 * len(lower):
        return "audio"
    numeric = pd.to_numeric(pd.Series(texts), errors="coerce")
    if numeric.notna().mean() > 0.95:
        return "numeric"
    words = sum(len(t.split()) for t in texts) / len(texts)
    distinct_share = len(set(texts)) / len(texts)
    if words >= 3 or (distinct_share > 0.5 and len(set(texts)) > 20):
        return "text"
    return "categorical" if series.nunique(dropna=True) > 1 else None


def infer_task(series: pd.Series, separator: str = "|") -> str:
    values = series.dropna()
    distinct = values.nunique()
    if distinct == 2:
        return "binary"
    if pd.api.types.is_float_dtype(values) and not bool((values % 1 == 0).all()):
        return "regression"
    if pd.api.types.is_numeric_dtype(values):
        return "multiclass" if distinct <= 50 else "regression"
    if values.astype(str).str.contains(separator, regex=False).mean() > 0.2:
        return "multilabel"
    return "multiclass"


def starter_config(
    frame: pd.DataFrame, target: str | list[str], base_dir: Path | None = None
) -> dict[str, Any]:
    """A config dict for :class:`polymodal.config.ExperimentConfig`: numeric columns grouped into
    one ``numeric`` input, categorical ones into ``categorical``, each text/image/audio column its
    own input; targets are never inputs."""
    targets = [target] if isinstance(target, str) else list(target)
    missing = [t for t in targets if t not in frame.columns]
    if missing:
        raise ValueError(
            f"target column(s) {missing} not in the table; columns are {list(frame.columns)}"
        )
    groups: dict[str, list[str]] = {"numeric": [], "categorical": []}
    inputs: list[dict[str, Any]] = []
    for col in frame.columns:
        if col in targets or str(col).lower().startswith("unnamed"):
            continue
        kind = infer_modality(frame[col], base_dir)
        if kind in groups:
            groups[kind].append(str(col))
        elif kind is not None:
            inputs.append({"name": str(col), "type": kind})
    taken = {i["name"] for i in inputs} | set(targets)
    for kind, cols in groups.items():
        if cols:
            name = kind if kind not in taken else f"{kind}_features"
            inputs.append({"name": name, "type": kind, "columns": cols})
    if not inputs:
        raise ValueError("no usable input columns found besides the target(s)")
    outputs = [{"name": t, "task": infer_task(frame[t])} for t in targets]
    return {
        "inputs": inputs,
        "fusion": {"type": "concat"},
        "outputs": outputs,
        "trainer": {"epochs": 10},
    }
