"""HTTP serving: a FastAPI app around one loaded model (loaded once; each request only
preprocesses its rows and runs the network). The request schema is a pydantic model generated
from the model's own input columns, so the OpenAPI schema, validation and error messages all come
from one description. Never imports the training code.

Bad input is a 4xx naming the row and field: pydantic's 422 (missing / extra field, wrong type,
NaN, malformed JSON), 413 for an oversize body, 422 for undecodable base64 or a file path outside
the allowed folder, and the pipeline's own data errors (an unreadable image/audio cell) as 422.
"""

# no ``from __future__ import annotations``: FastAPI reads the endpoint's annotations, and the
# request model is built at run time inside ``create_app``
import base64
import binascii
import tempfile
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model

from polymodal.data.base import DataError
from polymodal.evaluation.predict import predict_frame
from polymodal.export.artifact import Artifact, load_artifact

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


def row_model(art: Artifact) -> type[BaseModel]:
    """One pydantic model per served model: every input column required (null = missing),
    nothing else allowed, no NaN/inf."""
    fields: dict[str, Any] = {
        col: (PY_TYPES[kind], Field(..., description=f"{kind} column"))
        for col, kind in input_columns(art).items()
    }
    config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)
    return create_model("Row", __config__=config, **fields)  # type: ignore[call-overload, no-any-return]


class Prediction(BaseModel):
    outputs: dict[str, Any]  # output -> {"label", "probabilities"} or {"value"}
    missing_modalities: list[str]


class PredictResponse(BaseModel):
    predictions: list[Prediction]


def _inside(data_dir: Path, value: str) -> Path | None:
    """``value`` as an existing file inside ``data_dir``, or None (a long base64 string is not a
    usable file name: the OS refuses it, and that only means it is not a path)."""
    try:
        path = (data_dir / value).resolve()
        return path if path.is_relative_to(data_dir) and path.is_file() else None
    except (OSError, ValueError):
        return None


def _decode_file(
    value: str, row: int, field: str, kind: str, folder: Path, data_dir: Path | None
) -> str:
    """A base64 / data: URI cell -> a temporary file; a path -> itself, only inside ``data_dir``."""
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


def create_app(
    model_dir: str | Path,
    backend: Literal["torch", "onnx"] = "torch",
    data_dir: str | Path | None = None,
    max_body_bytes: int = 16 * 2**20,
    max_rows: int = 1024,
) -> FastAPI:
    art = load_artifact(model_dir)
    runner = None
    if backend == "onnx":
        from polymodal.export.onnx import OnnxModel

        runner = OnnxModel(Path(model_dir) / "model.onnx")
    allowed = Path(data_dir).resolve() if data_dir else None
    columns = input_columns(art)
    Row = row_model(art)
    Request_ = create_model(
        "PredictRequest",
        __config__=ConfigDict(extra="forbid"),
        rows=(list[Row], Field(..., min_length=1, max_length=max_rows)),  # type: ignore[valid-type]
    )
    app = FastAPI(title="polymodal model server", version="1")
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > max_body_bytes:
            return JSONResponse(
                status_code=413,
                content={"detail": f"request body is {size} bytes; the limit is {max_body_bytes}"},
            )
        return await call_next(request)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metadata")
    def metadata() -> dict[str, Any]:
        outputs = {
            o.name: {
                "task": o.task,
                "labels": [str(x) for x in art.pipeline.targets[o.name].proba_labels()],
            }
            if o.task != "regression"
            else {"task": o.task}
            for o in art.config.outputs
        }
        return {
            "inputs": columns,
            "outputs": outputs,
            "backend": backend,
            "model_card": {"config": art.config.model_dump(mode="json"), "metrics": art.metrics},
        }

    @app.post("/predict", response_model=PredictResponse)
    def predict(body: Request_) -> Any:  # type: ignore[valid-type]
        records = [r.model_dump() for r in body.rows]  # type: ignore[attr-defined]
        with tempfile.TemporaryDirectory(prefix="polymodal-serve-") as tmp:
            try:
                for i, rec in enumerate(records):
                    for col, kind in columns.items():
                        if kind in FILE_TYPES and rec[col] is not None and rec[col].strip():
                            rec[col] = _decode_file(rec[col], i, col, kind, Path(tmp), allowed)
                frame = pd.DataFrame.from_records(records, columns=list(columns))
                out = predict_frame(art.model, art.pipeline, frame, Path(tmp), "<request>", runner)
            except (CellError, DataError, ValueError, OSError) as err:  # the cell's fault
                return JSONResponse(status_code=422, content={"detail": str(err)})
        return {"predictions": [_row(art, out, i) for i in range(len(out))]}

    return app


def _where(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "rows", 3, "age")`` -> ``"row 3, field 'age'"`` (or the path as given)."""
    parts = list(loc)[1:] if loc and loc[0] == "body" else list(loc)
    if len(parts) >= 3 and parts[0] == "rows" and isinstance(parts[1], int):
        return f"row {parts[1]}, field {parts[2]!r}"
    return ".".join(str(p) for p in parts) or "body"


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """pydantic's 422 without echoing the input back: a NaN or a raw byte in the input would make
    the error itself unserialisable (a 500). Each error names its row and field."""
    errors = [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"],
         "message": f"{_where(e['loc'])}: {e['msg']}"}
        for e in exc.errors()
    ]  # fmt: skip
    return JSONResponse(status_code=422, content={"detail": errors})


def _row(art: Artifact, out: pd.DataFrame, i: int) -> dict[str, Any]:
    row = out.iloc[i]
    outputs: dict[str, Any] = {}
    for o in art.config.outputs:
        proba = {
            c.split("_proba_", 1)[1]: float(row[c])
            for c in out.columns
            if c.startswith(f"{o.name}_proba_")
        }
        value = row[o.name]
        value = value.item() if hasattr(value, "item") else value
        outputs[o.name] = {"label": value, "probabilities": proba} if proba else {"value": value}
    missing = [m for m in str(row["missing_modalities"]).split(",") if m]
    return {"outputs": outputs, "missing_modalities": missing}
