"""Reading tables: CSV / TSV, Parquet, JSON Lines."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from polymodal.data.base import DataError

READERS = {
    ".csv": lambda p: pd.read_csv(p),
    ".tsv": lambda p: pd.read_csv(p, sep="\t"),
    ".parquet": lambda p: pd.read_parquet(p),
    ".pq": lambda p: pd.read_parquet(p),
    ".jsonl": lambda p: pd.read_json(p, lines=True),
    ".json": lambda p: pd.read_json(p, lines=True),
}


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: table not found")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(
            f"{path}: unknown table format {path.suffix!r}; expected one of {', '.join(READERS)}"
        )
    try:
        frame = reader(path)
    except (ValueError, OSError) as err:
        raise DataError(f"{path}: could not be read as {path.suffix} ({err})") from err
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{path}: expected a table of records")
    return frame


def table_base_dir(path: str | Path) -> Path:
    """Relative image/audio paths in a table are resolved against the table's folder."""
    return Path(path).resolve().parent


def is_missing(value: object) -> bool:
    """None, NaN, pd.NA and empty/blank strings are missing cells."""
    if value is None or value is pd.NA:
        return True
    if isinstance(value, float) and value != value:
        return True
    return isinstance(value, str) and not value.strip()
