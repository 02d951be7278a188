"""Reading tables: CSV / TSV (optionally compressed), Parquet, JSON Lines or a JSON array of
records."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeAlias

import numpy as np
import pandas as pd

from polymodal.data.base import DataError

TableLike: TypeAlias = pd.DataFrame | str | Path  # a table, or the path of one
# rows, the folder their relative file paths resolve against, and the table's name for errors
Table: TypeAlias = tuple[pd.DataFrame, Path, str]


def _read_json(path: Path) -> pd.DataFrame:
    """JSON Lines (one record per line), or an array of records when the file starts with '['."""
    with open(path, "rb") as fh:
        start = fh.read(4096).lstrip()
    return pd.read_json(path, lines=not start.startswith(b"["))


COMPRESSION = (".gz", ".bz2", ".xz", ".zip", ".zst")
READERS = {
    ".csv": lambda p: pd.read_csv(p),
    ".tsv": lambda p: pd.read_csv(p, sep="\t"),
    ".parquet": lambda p: pd.read_parquet(p),
    ".pq": lambda p: pd.read_parquet(p),
    ".jsonl": lambda p: pd.read_json(p, lines=True),
    ".json": _read_json,
}


def table_format(path: Path) -> str:
    """The format suffix, looking through a compression suffix (``t.csv.gz`` -> ``.csv``)."""
    suffixes = [s.lower() for s in path.suffixes]
    if len(suffixes) >= 2 and suffixes[-1] in COMPRESSION:
        return suffixes[-2]
    return suffixes[-1] if suffixes else ""


def read_table(path: str | Path) -> pd.DataFrame:
    """A table as a DataFrame; errors name the file and what was expected."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: table not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder; expected a table file ({', '.join(READERS)})")
    reader = READERS.get(table_format(path))
    if reader is None:
        raise DataError(
            f"{path}: unknown table format {path.suffix!r}; expected one of {', '.join(READERS)}"
        )
    try:
        check_header(path, _header(path))
        frame = reader(path)
    except (ValueError, OSError) as err:
        if isinstance(err, DataError):
            raise
        text = " ".join(str(err).split())
        raise DataError(f"{path}: could not be read as {table_format(path)} ({text})") from err
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{path}: expected a table of records")
    check_header(path, list(frame.columns))
    return frame


def check_header(path: str | Path, names: list[Any]) -> None:
    """Column names must be unique: pandas would silently rename a second ``a`` to ``a.1``."""
    counts = Counter(str(n) for n in names if not is_missing(n))
    twice = [n for n, k in counts.items() if k > 1]
    if twice:
        raise DataError(
            f"{path}: column {twice[0]!r} appears {counts[twice[0]]} times in the header; "
            "expected unique column names (rename or drop the copies)"
        )


OPENERS: dict[str, Callable[..., IO[Any]]] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def _header(path: Path) -> list[Any]:
    """The column names as written, before a reader renames or merges repeated ones: a CSV's
    first row, the keys of a JSON Lines file's first record, a Parquet file's schema."""
    fmt = table_format(path)
    if fmt in (".csv", ".tsv"):
        first = pd.read_csv(path, sep="," if fmt == ".csv" else "\t", header=None, nrows=1,
                            dtype=str)  # fmt: skip
        return first.iloc[0].tolist() if len(first) else []
    if fmt in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    suffix = path.suffix.lower()
    if fmt == ".jsonl" and (suffix == ".jsonl" or suffix in OPENERS):
        with OPENERS.get(suffix, open)(path, "rt", encoding="utf-8") as fh:
            line = next((s for s in fh if s.strip()), "")
        pairs = json.loads(line, object_pairs_hook=list) if line.strip() else []
        return [k for k, _ in pairs] if isinstance(pairs, list) else []
    return []


def table_base_dir(path: str | Path) -> Path:
    """Relative image/audio paths in a table are resolved against the table's folder."""
    return Path(path).resolve().parent


def is_missing(value: object) -> bool:
    """None, NaN, pd.NA and empty/blank strings are missing cells."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(np.isnan(value))
    return isinstance(value, str) and not value.strip()


def read_any(data: TableLike, name: str, base_dir: str | Path | None = None) -> Table:
    """A table with the folder its relative file paths are resolved against (the table's own
    folder, or ``base_dir`` / the working directory for DataFrames) and its name for errors."""
    if isinstance(data, pd.DataFrame):
        return data, Path(base_dir or Path.cwd()).resolve(), f"<{name} DataFrame>"
    path = Path(data)
    return read_table(path), path.resolve().parent, str(path)
