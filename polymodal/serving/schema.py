"""What a request may hold, described once from the model's own input columns: the pydantic row
model (JSON bodies, validation and the OpenAPI schema), the multipart form's fields, and how an
image/audio cell (base64, a data: URI, an uploaded file or a path inside the allowed folder)
becomes a file the preprocessing can read. Every refusal names the row and the field."""

# no ``from __future__ import annotations``: FastAPI reads these annotations at run time
import base64
import binascii
import inspect
import math
from pathlib import Path
from typing import Any

from fastapi import File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.datastructures import UploadFile as Upload  # what form parsing hands over

from polymodal.export.artifact import Artifact

FILE_TYPES = ("image", "audio")
PY_TYPES: dict[str, Any] = {
    "text": str | None,
    "numeric": float | None,
    "categorical": str | int | float | None,
    "image": str | None,  # base64 (or a data: URI), or a path inside the allowed folder
    "audio": str | None,
}


class CellError(ValueError):
    """A cell that cannot be used, with its row and field."""

    def __init__(self, row: int, field: str, expected: str) -> None:
        super().__init__(f"row {row}, field {field!r}: {expected}")
        self.row, self.field = row, field


def input_columns(art: Artifact) -> dict[str, str]:
    """Column -> modality of every input column the model reads, sorted."""
    cols = {c: i.type for i in art.config.inputs for c in (i.columns or [i.name])}
    return dict(sorted(cols.items()))


def row_model(columns: dict[str, str]) -> type[BaseModel]:
    """One pydantic model per served model: every input column required (null = missing),
    nothing else allowed, no NaN/inf."""
    fields: dict[str, Any] = {
        col: (PY_TYPES[kind], Field(..., description=f"{kind} column"))
        for col, kind in columns.items()
    }
    config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)
    return create_model("Row", __config__=config, **fields)  # type: ignore[call-overload, no-any-return]


def request_model(columns: dict[str, str], max_rows: int) -> type[BaseModel]:
    Row = row_model(columns)
    return create_model(  # type: ignore[call-overload, no-any-return]
        "PredictRequest",
        __config__=ConfigDict(extra="forbid"),
        rows=(list[Row], Field(..., min_length=1, max_length=max_rows)),  # type: ignore[valid-type]
    )


def form_signature(columns: dict[str, str]) -> inspect.Signature:
    """The multipart endpoint's parameters: one form field per column (files for image/audio),
    each optional (a form cannot send null: an absent field is a missing value). Parameter names
    are positional (``c0``, ``c1``...) with the column as alias, so any column name works."""
    params = [inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request)]
    for i, (col, kind) in enumerate(columns.items()):
        annotation: Any = UploadFile if kind in FILE_TYPES else str
        maker = File if kind in FILE_TYPES else Form
        default = maker(
            None, alias=col, description=f"{kind} {'file' if kind in FILE_TYPES else 'value'}"
        )
        params.append(
            inspect.Parameter(
                f"c{i}", inspect.Parameter.KEYWORD_ONLY, default=default,
                annotation=annotation | None,
            )
        )  # fmt: skip
    return inspect.Signature(params)


async def form_record(
    columns: dict[str, str], request: Request, values: dict[str, Any]
) -> dict[str, Any]:
    """One row from a multipart form: numbers parsed, uploads read, unknown fields refused."""
    form = await request.form()
    extra = sorted(set(form.keys()) - set(columns))
    if extra:
        raise CellError(0, extra[0], f"not an input of this model; inputs are {list(columns)}")
    record: dict[str, Any] = {}
    for i, (col, kind) in enumerate(columns.items()):
        value = values.get(f"c{i}")
        if isinstance(value, Upload):
            blob = await value.read()
            value = blob or None  # an empty upload is a missing file
        elif kind == "numeric" and value not in (None, ""):
            value = _number(value, col)
        record[col] = value if value != "" else None
    return record


def _number(value: str, col: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise CellError(0, col, f"expected a number, got {value[:40]!r}") from None
    if not math.isfinite(number):
        raise CellError(0, col, f"expected a finite number, got {value[:40]!r}")
    return number


def _inside(data_dir: Path, value: str) -> Path | None:
    """``value`` as an existing file inside ``data_dir``, or None (a long base64 string is not a
    usable file name: the OS refuses it, and that only means it is not a path)."""
    try:
        path = (data_dir / value).resolve()
        return path if path.is_relative_to(data_dir) and path.is_file() else None
    except (OSError, ValueError):
        return None


def decode_file(
    value: str | bytes, row: int, field: str, kind: str, folder: Path, data_dir: Path | None
) -> str:
    """A cell -> a file path the preprocessing reads: uploaded bytes and base64 / data: URIs are
    written to ``folder``; a path is accepted only inside ``data_dir``."""
    if isinstance(value, bytes):
        blob = value
    else:
        raw = value.split(",", 1)[1] if value.startswith("data:") else value
        if data_dir is not None and not value.startswith("data:"):
            path = _inside(data_dir, value)
            if path is not None:
                return str(path)
        try:
            blob = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            allowed = (
                f"or a path inside {data_dir}"
                if data_dir
                else "(file paths are not accepted: the server has no --data-dir)"
            )
            raise CellError(
                row, field, f"expected base64-encoded {kind} bytes or a data: URI {allowed}"
            ) from None
    target = folder / f"{row}_{len(list(folder.iterdir()))}.bin"  # format read from the bytes
    target.write_bytes(blob)
    return str(target)


def _where(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "rows", 3, "age")`` -> ``"row 3, field 'age'"`` (or the path as given)."""
    parts = list(loc)[1:] if loc and loc[0] == "body" else list(loc)
    if len(parts) >= 3 and parts[0] == "rows" and isinstance(parts[1], int):
        return f"row {parts[1]}, field {parts[2]!r}"
    return ".".join(str(p) for p in parts) or "body"


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """pydantic's 422 without echoing the input back: a NaN or a raw byte in the input would make
    the error itself unserialisable (a 500). Each error names its row and field."""
    errors = [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"],
         "message": f"{_where(e['loc'])}: {e['msg']}"}
        for e in exc.errors()
    ]  # fmt: skip
    return JSONResponse(status_code=422, content={"detail": errors})
