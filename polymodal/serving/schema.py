"""What a request may hold, described once from the model's own input columns: the pydantic row
model (JSON bodies, validation and the OpenAPI schema), the multipart form's fields, and how an
image/audio cell (base64, a data: URI, an uploaded file or a path inside the allowed folder)
becomes what the preprocessing reads (bytes, or a path). Every refusal names the row and the
field, and none names a folder of the server."""

# no ``from __future__ import annotations``: FastAPI reads these annotations at run time
import base64
import binascii
import inspect
import math
import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    create_model,
)
from python_multipart.multipart import parse_options_header
from starlette.datastructures import UploadFile as Upload  # what form parsing hands over

from polymodal.export.artifact import Artifact

# cells that may be files (a series may also be inline)
FILE_TYPES = ("image", "audio", "timeseries", "video")
MAX_PATH_CHARS = 4096  # PATH_MAX: a longer file cell is never looked up as a path
MAX_NAME_CHARS = 255  # NAME_MAX: the longest name of one folder or file
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def unicode_text(value: str) -> str:
    """``value`` if it can be encoded as UTF-8: JSON can carry a lone surrogate (``"\\ud800"``),
    which no tokenizer, file name or response can encode."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(
                f"expected valid Unicode text, got a lone surrogate "
                f"(U+{ord(value[err.start]):04X}) at character {err.start}"
            ) from None
    return value


def category(value: Any) -> Any:
    """A category is a string or a number; JSON's true/false would otherwise become 1/0."""
    if isinstance(value, bool):
        raise ValueError(f"expected a category (a string or a number), got {str(value).lower()}")
    return unicode_text(value) if isinstance(value, str) else value


Text = Annotated[str, AfterValidator(unicode_text)]
Number = Annotated[float, Strict()]  # integers are accepted as numbers, true/false and "35" not
Step = Number | None  # null: a gap
# a JSON true/false is refused where a number or a category is expected, and "35" for a number
PY_TYPES: dict[str, Any] = {
    "text": Text | None,
    "numeric": Annotated[float, Strict()] | None,  # integers are accepted as numbers
    "categorical": Annotated[str | int | float, BeforeValidator(category)] | None,
    "image": Text | None,  # base64 (or a data: URI), or a path inside the allowed folder
    "audio": Text | None,
    "video": Text | None,  # a video file as base64 / a data: URI, or a path in the data folder
    # time steps, each a list of channel values (or one value per step), or a file (CSV / .npy /
    # Parquet) as base64 or a path inside the allowed folder
    "timeseries": list[list[Step]] | list[Step] | Text | None,
}


class CellError(ValueError):
    """A cell that cannot be used, with its row and field."""

    def __init__(self, row: int, field: str, expected: str) -> None:
        super().__init__(f"row {row}, field {field!r}: {expected}")
        self.row, self.field = row, field


class Issue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str
    message: str  # "row 3, field 'age': ..."


class ErrorBody(BaseModel):
    detail: str | list[Issue]  # one line naming row and field, or pydantic's list of issues


ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": "body over the size limit, or files that would "
          "decode to more than the per-request limit"},
    422: {"model": ErrorBody, "description": "a cell, row or body that cannot be used; the "
          "message names the row and field"},
}  # fmt: skip
UPLOAD_ERRORS = {**ERRORS, 415: {"model": ErrorBody, "description": "not a form body"}}


def input_columns(art: Artifact) -> dict[str, str]:
    """Column -> modality of every input column the model reads, sorted. A column that several
    inputs read (a video and its sound track) is of the input named after it, else the first."""
    cols: dict[str, str] = {}
    for inp in art.config.inputs:
        for c in inp.columns or [inp.name]:
            if c not in cols or inp.name == c:
                cols[c] = inp.type
    return dict(sorted(cols.items()))


def cell_checks(art: Artifact) -> dict[str, Any]:
    """Column -> the fitted preprocessor's ``validate_cell`` where it has one (a series' channel
    count and length): a cell of the wrong shape is a 422 naming its row and field."""
    checks: dict[str, Any] = {}
    for inp in art.config.inputs:
        check = getattr(art.pipeline.preprocessors[inp.name], "validate_cell", None)
        if check is not None:
            checks.update({c: check for c in inp.columns or [inp.name]})
    return checks


def row_model(columns: dict[str, str], checks: dict[str, Any] | None = None) -> type[BaseModel]:
    """One pydantic model per served model: every input column required (null = missing),
    nothing else allowed, no NaN/inf; ``checks[column]`` validates a cell further."""
    checks = checks or {}
    fields: dict[str, Any] = {
        col: (
            Annotated[PY_TYPES[kind], AfterValidator(checks[col])] if col in checks
            else PY_TYPES[kind],
            Field(..., description=f"{kind} column"),
        )
        for col, kind in columns.items()
    }  # fmt: skip
    config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)
    return create_model("Row", __config__=config, **fields)  # type: ignore[call-overload, no-any-return]


def request_model(
    columns: dict[str, str], max_rows: int, checks: dict[str, Any] | None = None
) -> type[BaseModel]:
    Row = row_model(columns, checks)
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
    if all(v is None for v in record.values()):  # most likely a client that sent no form at all
        raise ValueError(
            f"row 0: every input is missing (the form fills none of {list(columns)}); "
            "send at least one"
        )
    return record


def form_problem(content_type: str | None, body: bytes) -> tuple[int, str] | None:
    """Why ``body`` cannot be the upload route's form, as (status, message), or None: another
    content type is a 415; a multipart body without a boundary, or cut short before its closing
    boundary (a truncated upload, which the parser would take for a form with fields missing), a
    422."""
    raw, params = parse_options_header(content_type or "")  # the type comes lower-cased
    kind = raw.decode("latin-1")
    if kind not in FORM_TYPES:
        return 415, (
            f"expected a multipart/form-data body (or a url-encoded form), got "
            f"{kind[:60] or 'no content type'!r}; JSON rows go to /predict"
        )
    if kind != "multipart/form-data":
        return None
    boundary = params.get(b"boundary")
    if not boundary:
        return 422, "the multipart body's content type names no boundary"
    closing = body.rfind(b"--" + boundary + b"--")
    if closing < 0 or (closing > 0 and body[closing - 2 : closing] != b"\r\n"):
        return 422, "the multipart body is incomplete: it ends before its closing boundary"
    return None


def _number(value: str, col: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise CellError(0, col, f"expected a number, got {value[:40]!r}") from None
    if not math.isfinite(number):
        raise CellError(0, col, f"expected a finite number, got {value[:40]!r}")
    return number


def _path_like(value: str) -> bool:
    """Whether ``value`` is worth one ``stat``: short enough for the OS to take (a longer cell is
    base64 or nothing, and resolving it component by component would cost minutes)."""
    return (
        len(value) <= MAX_PATH_CHARS
        and "\x00" not in value
        and all(len(part) <= MAX_NAME_CHARS for part in value.split("/"))
    )


def _inside(data_dir: Path, value: str) -> Path | None:
    """``value`` as an existing file inside ``data_dir``, or None. One ``stat`` first; only an
    existing file is resolved (symlinks followed) and checked to be inside."""
    try:
        candidate = data_dir / value
        if not candidate.is_file():
            return None
        path = candidate.resolve()
        return path if path.is_relative_to(data_dir) else None
    except (OSError, ValueError):  # a name the OS refuses (e.g. a lone surrogate)
        return None


def file_cell(
    value: str | bytes, row: int, field: str, kind: str, data_dir: Path | None
) -> bytes | str:
    """A cell -> what the preprocessing reads: uploaded bytes and base64 / data: URIs as bytes, a
    path only inside ``data_dir`` (relative to it). A data: URI is never a path; a cell too long
    for a path is only tried as base64."""
    if isinstance(value, bytes):
        return value
    if value.startswith("data:"):
        header, comma, payload = value.partition(",")
        if not comma:
            raise CellError(
                row, field, f"expected a data: URI of the form data:<type>;base64,<{kind} "
                f"bytes in base64>, got one without a comma ({header[:40]!r})",
            )  # fmt: skip
        return _base64(payload, row, field, kind, f"base64-encoded {kind} bytes after the comma")
    path_like = _path_like(value)
    if data_dir is not None and path_like:
        path = _inside(data_dir, value)
        if path is not None:  # relative, to be read with the data folder as the table's folder
            return str(path.relative_to(data_dir))
    if data_dir is None:
        where = "(file paths are not accepted: the server has no --data-dir)"
    elif path_like:
        where = "or the path of a file inside the server's data folder (no such file there)"
    else:
        where = f"(too long for a file path: over {MAX_PATH_CHARS} characters or a name over {MAX_NAME_CHARS})"  # fmt: skip
    return _base64(value, row, field, kind, f"base64-encoded {kind} bytes or a data: URI {where}")


def _base64(text: str, row: int, field: str, kind: str, expected: str) -> bytes:
    try:
        blob = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):  # bad characters or padding, or not ASCII
        raise CellError(row, field, f"expected {expected}; it is not valid base64") from None
    if not blob:
        raise CellError(row, field, f"expected {expected}; it decodes to no bytes")
    return blob


def _where(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "rows", 3, "age")`` -> ``"row 3, field 'age'"`` (or the path as given)."""
    parts = list(loc)[1:] if loc and loc[0] == "body" else list(loc)
    if len(parts) >= 2 and parts[0] == "rows" and isinstance(parts[1], int):
        return f"row {parts[1]}" + (f", field {parts[2]!r}" if len(parts) >= 3 else "")
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


def error(status: int, detail: str) -> JSONResponse:
    """A one-line error; anything a client sent that UTF-8 cannot carry is escaped, not a 500."""
    text = detail.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse(status_code=status, content={"detail": text})


_IN_MEMORY = re.compile(r" ?'?<_io\.BytesIO object at 0x[0-9a-fA-F]+>'?")


def public(message: str, data_dir: Path | None) -> str:
    """A data error as the client may read it: paths relative to the data folder, and the
    in-memory file the decoder saw (a BytesIO and its address) left out."""
    if data_dir is not None:
        message = message.replace(f"{data_dir}/", "").replace(str(data_dir), "<data folder>")
    return _IN_MEMORY.sub("", message)
