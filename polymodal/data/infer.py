"""Guess each column's modality and the target's task, and write a starter config."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.base import DataError
from polymodal.data.checks import Finding, column_findings
from polymodal.data.io import is_missing
from polymodal.data.preprocess.series_io import parse_inline, read_file

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")
AUDIO_EXT = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")
# paths to files that no input type reads (yet): the column is left out, with a note
OTHER_EXT: tuple[str, ...] = (".csv", ".tsv", ".npy", ".npz", ".parquet", ".json", ".txt", ".pdf")
VIDEO_EXT = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")
AUDIO_MAGIC = (b"fLaC", b"OggS", b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2")
SERIES_EXT = (".csv", ".tsv", ".npy", ".parquet", ".pq")  # timeseries when the files hold numbers
SERIES_PEEK = (5, 100_000, 64 * 2**20)  # cells read to decide, their most steps and bytes
SAMPLE = 200


def _sample(series: pd.Series) -> list[Any]:
    return [v for v in series.head(5 * SAMPLE).tolist() if not _missing(v)][:SAMPLE]


def _missing(value: Any) -> bool:
    return not isinstance(value, (list, tuple, dict, np.ndarray, bytes)) and is_missing(value)


def sniff(head: bytes) -> str | None:
    """ "image" / "audio" / "video" from a file's first bytes (its magic number), else None."""
    if head[:4] == b"RIFF":  # RIFF holds WAV, WebP and AVI
        return {b"WAVE": "audio", b"WEBP": "image", b"AVI ": "video"}.get(head[8:12])
    if head[4:8] == b"ftyp" or head[:4] == b"\x1aE\xdf\xa3":  # mp4 / mov, Matroska / WebM
        return "audio" if head[8:11] == b"M4A" else "video"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "audio"
    if head.startswith(IMAGE_MAGIC):
        return "image"
    return "audio" if head.startswith(AUDIO_MAGIC) else None


MAX_PATH_CHARS = 4096  # longer cells are never file paths (and are not asked of the OS)


def looks_like_path(text: str) -> bool:
    """Cheap test before any file-system call: one line, under ``MAX_PATH_CHARS``, no NUL, no
    path component over 255 bytes (the OS limit that review texts used to hit)."""
    if not text or len(text) > MAX_PATH_CHARS or "\n" in text or "\x00" in text:
        return False
    parts = re.split(r"[/\\]", text)
    return all(len(p.encode("utf-8", "surrogatepass")) <= 255 for p in parts)


def _is_file(path: Path) -> bool:
    """``path.is_file()`` that treats any OS refusal (too long, no permission) as "no"."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(16)
    except OSError:
        return b""


def _file_kind(values: list[Any], base_dir: Path | None) -> str | None:
    """image / audio for cells that are bytes, {"bytes", "path"} dicts, or file paths (by their
    extension, or by the magic bytes of files that exist under ``base_dir``); "file" for paths
    of another kind. Never raises: anything odd is "not a file"."""
    first = values[0]
    if isinstance(first, dict):
        raw, path = first.get("bytes"), first.get("path")
        if isinstance(raw, (bytes, bytearray)) and raw:
            return sniff(bytes(raw[:16])) or "image"  # {"bytes", "path"} is the HF image layout
        return _file_kind([path], base_dir) if isinstance(path, str) else None
    if isinstance(first, (bytes, bytearray)):
        return sniff(bytes(first[:16]))
    if not isinstance(first, str):
        return None
    lower = [str(v).strip().lower() for v in values]
    for kind, ext in (("image", IMAGE_EXT), ("audio", AUDIO_EXT), ("video", VIDEO_EXT),
                      ("file", OTHER_EXT)):  # fmt: skip
        if sum(t.endswith(ext) and looks_like_path(t) for t in lower) >= 0.8 * len(lower):
            return "timeseries" if kind == "file" and _series_files(values, base_dir) else kind
    texts = [str(v).strip() for v in values[:5]]
    if base_dir is not None and all(looks_like_path(t) for t in texts):
        paths = [Path(t).expanduser() for t in texts]
        paths = [p if p.is_absolute() else base_dir / p for p in paths]
        if all(_is_file(p) for p in paths):
            return sniff(_head(paths[0])) or "file"
    return None


def _series_files(values: list[Any], base_dir: Path | None) -> bool:
    """Paths to CSV / .npy / Parquet files that exist and hold numbers (the first few are read,
    within limits): a time series per cell. Never raises."""
    count, steps, size = SERIES_PEEK
    texts = [str(v).strip() for v in values[:count]]
    if base_dir is None or not all(t.lower().endswith(SERIES_EXT) for t in texts):
        return False
    try:
        paths = [Path(t).expanduser() for t in texts]
        return all(read_file(p if p.is_absolute() else base_dir / p, steps, size) for p in paths)
    except Exception:  # unreadable, not numeric, too large: not a series column
        return False


def _inline_series(values: list[Any]) -> bool:
    """Cells holding lists of numbers, or of steps of numbers: a time series per cell."""
    try:
        return all(parse_inline(v, SERIES_PEEK[1]) is not None for v in values[: SERIES_PEEK[0]])
    except Exception:  # lists of words or labels (a multilabel column), ragged lists
        return False


def infer_modality(series: pd.Series, base_dir: Path | None = None) -> str | None:
    """text | image | audio | timeseries | numeric | categorical, or None for columns to skip
    (empty, constant, or of a kind no preprocessor reads: lists of words, other files); see
    :func:`skip_reason`."""
    values = _sample(series)
    if not values:
        return None
    if isinstance(values[0], (list, tuple, np.ndarray)):
        return "timeseries" if _inline_series(values) else None
    kind = _file_kind(values, base_dir)
    if kind is not None or isinstance(values[0], (dict, bytes, bytearray)):
        return kind if kind in ("image", "audio", "timeseries", "video") else None  # other: skip
    if pd.api.types.is_bool_dtype(series):
        return "categorical" if series.nunique(dropna=True) > 1 else None
    if pd.api.types.is_numeric_dtype(series):
        distinct = series.nunique(dropna=True)
        if distinct <= 1:
            return None
        integral = bool((series.dropna() % 1 == 0).all())
        return "categorical" if integral and distinct <= 10 else "numeric"
    return _string_kind(series, values)


def skip_reason(series: pd.Series, base_dir: Path | None = None) -> str:
    """Why :func:`infer_modality` skipped a column, in words."""
    values = _sample(series)
    if not values:
        return "every cell is missing"
    if isinstance(values[0], (list, tuple, np.ndarray)):
        return (
            "its cells are lists but not numeric series (words, labels: no input type reads them)"
        )
    if _file_kind(values, base_dir) == "file":
        ext = Path(str(values[0])).suffix or "?"
        return f"file paths of a kind no input type reads ({ext})"
    if isinstance(values[0], (dict, bytes, bytearray)):
        return "records or bytes of an unrecognised kind"
    return "a single value in every row (constant)"


def _string_kind(series: pd.Series, values: list[Any]) -> str | None:
    """Strings: numbers written as text -> numeric; long or mostly distinct -> text, unless a
    few values repeat over many rows (then they are categories, however many words); else
    categorical (None when constant)."""
    texts = [str(v).strip() for v in values]
    numeric = pd.to_numeric(pd.Series(texts), errors="coerce")
    if numeric.notna().mean() > 0.95:
        return "numeric" if numeric.nunique() > 1 else None
    distinct = series.nunique(dropna=True)
    if distinct <= 1:
        return None
    if distinct <= 50 and series.notna().sum() >= 20 * distinct:
        return "categorical"  # e.g. "Intimate apparel and sleepwear": a label, not prose
    words = sum(len(t.split()) for t in texts) / len(texts)
    distinct_share = len(set(texts)) / len(texts)
    if words >= 3 or (distinct_share > 0.5 and len(set(texts)) > 20):
        return "text"
    return "categorical"


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


def check_target(frame: pd.DataFrame, target: str) -> None:
    """A target must exist and hold at least two distinct values."""
    if target not in frame.columns:
        raise DataError(
            f"target column {target!r} is not in the table; columns are {list(map(str, frame.columns))}"
        )
    values = frame[target].dropna()
    if values.map(lambda v: isinstance(v, str) and not v.strip()).all():
        raise DataError(f"target column {target!r}: every cell is missing; expected labels")
    if not isinstance(values.iloc[0], (list, tuple, np.ndarray)) and values.nunique() < 2:
        raise DataError(
            f"target column {target!r}: one value ({values.iloc[0]!r}) in every row; expected at "
            "least two classes (or varying numbers) to learn from"
        )


@dataclass
class Inferred:
    """What ``init`` found: the starter config, each kept column's modality, and the findings
    (left-out columns and warnings) it should tell the user."""

    config: dict[str, Any]
    kinds: dict[str, str]
    findings: list[Finding] = field(default_factory=list)


def _kind_or_finding(
    frame: pd.DataFrame, col: str, base_dir: Path | None
) -> tuple[str | None, Finding | None]:
    """A column's modality, or why it is left out; an error inside inference is a finding."""
    try:
        kind = infer_modality(frame[col], base_dir)
        if kind is None:
            return None, Finding(col, "unsupported", skip_reason(frame[col], base_dir))
        return kind, None
    except Exception as err:  # one odd column must not stop init: say which and go on
        msg = f"could not infer its type ({type(err).__name__}: {str(err)[:200]})"
        return None, Finding(col, "error", msg)


def infer_table(
    frame: pd.DataFrame,
    target: str | list[str],
    base_dir: Path | None = None,
    drop: tuple[str, ...] | list[str] = (),
    keep: tuple[str, ...] | list[str] = (),
) -> Inferred:
    """Modalities, findings and a starter config. Leaks, row identifiers, constant, mostly
    missing and unreadable columns are left out (``keep`` forces them in, ``drop`` forces a
    column out); id columns whose values repeat become categories."""
    targets = [target] if isinstance(target, str) else list(target)
    for t in targets:
        check_target(frame, t)
    unknown = [c for c in [*drop, *keep] if c not in frame.columns]
    if unknown:
        raise DataError(
            f"--drop/--keep: no column {unknown[0]!r}; columns are {list(frame.columns)}"
        )
    found: list[Finding] = []
    kinds: dict[str, str] = {}
    for col in map(str, frame.columns):
        if col in targets:
            continue
        if col in drop or (col.lower().startswith("unnamed") and col not in keep):
            why = "left out on request (--drop)" if col in drop else "an unnamed index column"
            found.append(Finding(col, "dropped", why))
            continue
        kind, finding = _kind_or_finding(frame, col, base_dir)
        if kind is not None:
            kinds[col] = kind
        elif finding is not None:
            found.append(finding)
    checked = column_findings(frame, list(kinds), kinds, targets)
    for f in checked:
        if f.column in keep:
            f.drop, f.message = False, f.message + " (kept on request: --keep)"
        if f.drop:
            kinds.pop(f.column, None)
        elif f.kind == "identifier":
            kinds[f.column] = "categorical"
    found += checked
    return Inferred(_config(frame, kinds, targets, found), kinds, found)


def starter_config(
    frame: pd.DataFrame, target: str | list[str], base_dir: Path | None = None
) -> dict[str, Any]:
    """The config of :func:`infer_table`."""
    return infer_table(frame, target, base_dir).config


def _config(
    frame: pd.DataFrame, kinds: dict[str, str], targets: list[str], found: list[Finding]
) -> dict[str, Any]:
    """Numeric columns grouped into one ``numeric`` input, categorical ones into
    ``categorical``, each text/image/audio/timeseries column its own input; targets are never
    inputs."""
    groups: dict[str, list[str]] = {"numeric": [], "categorical": []}
    inputs: list[dict[str, Any]] = []
    for col, kind in kinds.items():
        if kind in groups:
            groups[kind].append(col)
        else:
            inputs.append({"name": col, "type": kind})
    taken = {i["name"] for i in inputs} | set(targets)
    for kind, cols in groups.items():
        if cols:
            name = _unique(kind, taken)
            taken.add(name)
            inputs.append({"name": name, "type": kind, "columns": cols})
    if not inputs:
        left = "; ".join(f"{f.column!r}: {f.message}" for f in found) or "none"
        raise DataError(
            f"no usable input columns besides the target(s) {targets}; left out: {left}"
        )
    outputs = [{"name": t, "task": infer_task(frame[t])} for t in targets]
    cfg: dict[str, Any] = {"inputs": inputs, "fusion": {"type": "concat"}, "outputs": outputs}
    cfg["trainer"] = {"epochs": 10}
    dropped = {f.column: f"{f.kind}: {f.message}" for f in found if f.drop}
    if dropped:
        cfg["dropped"] = dropped
    return cfg


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name_features``, ``name_features2``... if a column already uses it."""
    candidates = itertools.chain(
        [name, f"{name}_features"], (f"{name}_features{i}" for i in itertools.count(2))
    )
    return next(c for c in candidates if c not in taken)
