"""Guess each column's modality and the target's task, and write a starter config."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.base import DataError
from polymodal.data.io import is_missing

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")
AUDIO_EXT = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")
AUDIO_MAGIC = (b"fLaC", b"OggS", b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2")
SAMPLE = 200


def _sample(series: pd.Series) -> list[Any]:
    return [v for v in series.head(5 * SAMPLE).tolist() if not _missing(v)][:SAMPLE]


def _missing(value: Any) -> bool:
    return not isinstance(value, (list, tuple, dict, np.ndarray, bytes)) and is_missing(value)


def sniff(head: bytes) -> str | None:
    """ "image" / "audio" from a file's first bytes (its magic number), else None."""
    if head[:4] == b"RIFF":  # RIFF holds both WAV and WebP
        return {b"WAVE": "audio", b"WEBP": "image"}.get(head[8:12])
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "audio"
    if head.startswith(IMAGE_MAGIC):
        return "image"
    return "audio" if head.startswith(AUDIO_MAGIC) else None


def _file_kind(values: list[Any], base_dir: Path | None) -> str | None:
    """image / audio for cells that are bytes, {"bytes", "path"} dicts, or file paths (by their
    extension, or by the magic bytes of files that exist under ``base_dir``)."""
    first = values[0]
    if isinstance(first, dict):
        raw, path = first.get("bytes"), first.get("path")
        if isinstance(raw, (bytes, bytearray)) and raw:
            return sniff(bytes(raw[:16])) or "image"  # {"bytes", "path"} is the HF image layout
        return _file_kind([path], base_dir) if isinstance(path, str) else "image"
    if isinstance(first, (bytes, bytearray)):
        return sniff(bytes(first[:16]))
    if not isinstance(first, str):
        return None
    lower = [str(v).strip().lower() for v in values]
    for kind, ext in (("image", IMAGE_EXT), ("audio", AUDIO_EXT)):
        if sum(t.endswith(ext) for t in lower) >= 0.8 * len(lower):
            return kind
    if base_dir is not None and all(len(v) < 1024 and "\n" not in v for v in lower[:5]):
        paths = [Path(str(v).strip()).expanduser() for v in values[:5]]
        paths = [p if p.is_absolute() else base_dir / p for p in paths]
        if all(p.is_file() for p in paths):
            with open(paths[0], "rb") as fh:
                return sniff(fh.read(16))
    return None


def infer_modality(series: pd.Series, base_dir: Path | None = None) -> str | None:
    """text | image | audio | numeric | categorical, or None for columns to skip (empty,
    constant, or of a kind no preprocessor reads, e.g. lists)."""
    values = _sample(series)
    if not values:
        return None
    if isinstance(values[0], (list, tuple, np.ndarray)):
        return None
    kind = _file_kind(values, base_dir)
    if kind is not None or isinstance(values[0], (dict, bytes, bytearray)):
        return kind  # an unrecognised blob is skipped
    if pd.api.types.is_bool_dtype(series):
        return "categorical" if series.nunique(dropna=True) > 1 else None
    if pd.api.types.is_numeric_dtype(series):
        distinct = series.nunique(dropna=True)
        if distinct <= 1:
            return None
        integral = bool((series.dropna() % 1 == 0).all())
        return "categorical" if integral and distinct <= 10 else "numeric"
    return _string_kind(series, values)


def _string_kind(series: pd.Series, values: list[Any]) -> str | None:
    """Strings: numbers written as text -> numeric; long or mostly distinct -> text; else
    categorical (None when constant)."""
    texts = [str(v).strip() for v in values]
    numeric = pd.to_numeric(pd.Series(texts), errors="coerce")
    if numeric.notna().mean() > 0.95:
        return "numeric" if numeric.nunique() > 1 else None
    words = sum(len(t.split()) for t in texts) / len(texts)
    distinct_share = len(set(texts)) / len(texts)
    if words >= 3 or (distinct_share > 0.5 and len(set(texts)) > 20):
        return "text"
    return "categorical" if series.nunique(dropna=True) > 1 else None


def infer_task(series: pd.Series, separator: str = "|") -> str:
    """binary | multiclass | multilabel | regression, from the target column's values."""
    values = series.dropna()
    if len(values) and isinstance(values.iloc[0], (list, tuple, np.ndarray)):
        return "multilabel"
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
        raise DataError(
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
    taken = {i["name"] for i in inputs} | set(map(str, targets))
    for kind, cols in groups.items():
        if cols:
            name = _unique(kind, taken)
            taken.add(name)
            inputs.append({"name": name, "type": kind, "columns": cols})
    if not inputs:
        raise DataError("no usable input columns found besides the target(s)")
    outputs = [{"name": t, "task": infer_task(frame[t])} for t in targets]
    return {
        "inputs": inputs,
        "fusion": {"type": "concat"},
        "outputs": outputs,
        "trainer": {"epochs": 10},
    }


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name_features``, ``name_features2``... if a column already uses it."""
    candidates = itertools.chain(
        [name, f"{name}_features"], (f"{name}_features{i}" for i in itertools.count(2))
    )
    return next(c for c in candidates if c not in taken)
