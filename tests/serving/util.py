"""Request bodies built from the served table's rows."""

from pathlib import Path
from typing import Any

import pandas as pd


def row(frame: pd.DataFrame, i: int = 1, **change: Any) -> dict[str, Any]:
    """Row ``i`` as a JSON row (row 0 has no size: 1 is where every modality is present)."""
    rec = frame.iloc[i][["review", "photo", "voice", "age", "size"]].to_dict()
    rec["size"] = rec["size"] if isinstance(rec["size"], str) else None
    return {**rec, **change}


def upload(folder: Path, rec: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """A JSON row as multipart form fields and file uploads."""
    files = {
        "photo": ("p.png", (folder / rec["photo"]).read_bytes(), "image/png"),
        "voice": ("v.wav", (folder / rec["voice"]).read_bytes(), "audio/wav"),
    }
    return {"review": rec["review"], "age": str(rec["age"]), "size": rec["size"]}, files
