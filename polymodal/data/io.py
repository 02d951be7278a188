"""Reading tables: CSV / TSV (optionally compressed), Parquet, JSON Lines or a JSON array of
records."""

from __future__ import annotations

from pathlib import Path
from typing import TypeAlias

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
        frame = reader(path)
    except (ValueError, OSError) as err:
        raise DataError(f"{path}: could not be read as {table_format(path)} ({err})") from err
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{path}: expected a table of records")
    return frame


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
