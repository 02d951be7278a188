"""HTTP serving: a FastAPI app around one loaded model (loaded once; each request only
preprocesses its rows and runs the network). Requests are described by :mod:`.schema`, from the
model's own input columns, so the OpenAPI schema, validation and error messages share one
description. Never imports the training code.

Bad input is a 4xx naming the row and field: pydantic's 422 (missing / extra field, wrong type,
NaN, malformed JSON), 413 for an oversize body, 422 for undecodable base64, an unreadable upload
or a file path outside the allowed folder, and the pipeline's own data errors (an unreadable
image/audio cell) as 422.
"""

# no ``from __future__ import annotations``: FastAPI reads the endpoint's annotations, and the
# request model is built at run time inside ``create_app``
import contextlib
import tempfile
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from polymodal.data.base import DataError
from polymodal.evaluation.predict import predict_frame
from polymodal.export.artifact import Artifact, load_artifact
from polymodal.serving import schema as S
from polymodal.serving.search import add_search_route


class Prediction(BaseModel):
    outputs: dict[str, Any]  # output -> {"label", "probabilities"} or {"value"}
    missing_modalities: list[str]


class PredictResponse(BaseModel):
    predictions: list[Prediction]


class Served:
    """The loaded model and what each request needs from it."""

    def __init__(self, model_dir: str | Path, backend: str, data_dir: str | Path | None) -> None:
        if backend not in ("torch", "onnx"):
            raise ValueError(f"backend must be torch or onnx, got {backend!r}")
        self.art: Artifact = load_artifact(model_dir)
        self.backend = backend
        self.runner = None
        if backend == "onnx":
            from polymodal.export.onnx import OnnxModel

            onnx_path = Path(model_dir) / "model.onnx"
            if not onnx_path.exists():
                raise FileNotFoundError(
                    f"{onnx_path} not found: run `polymodal export {model_dir}` first"
                )
            self.runner = OnnxModel(onnx_path)
        self.data_dir = Path(data_dir).resolve() if data_dir else None
        self.columns = S.input_columns(self.art)

    def predict(self, records: list[dict[str, Any]]) -> Any:
        """Records (cells as sent) -> the response body, or a 422 naming the row and field."""
        cells = [
            (i, col, kind)
            for i, rec in enumerate(records)
            for col, kind in self.columns.items()
            if kind in S.FILE_TYPES and _filled(rec[col])
        ]
        with contextlib.ExitStack() as stack:  # a scratch folder only for decoded files
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory())) if cells else Path()
            try:
                for i, col, kind in cells:
                    records[i][col] = S.decode_file(
                        records[i][col], i, col, kind, tmp, self.data_dir
                    )
                frame = pd.DataFrame.from_records(records, columns=list(self.columns))
                out = predict_frame(
                    self.art.model, self.art.pipeline, frame, tmp, "<request>", self.runner
                )
            except (S.CellError, DataError, ValueError, OSError) as err:  # the cell's fault
                return JSONResponse(status_code=422, content={"detail": str(err)})
        return {"predictions": [_row(self.art, out, i) for i in range(len(out))]}

    def metadata(self) -> dict[str, Any]:
        outputs: dict[str, Any] = {}
        for o in self.art.config.outputs:
            outputs[o.name] = {"task": o.task}
            if o.task != "regression":
                labels = self.art.pipeline.targets[o.name].proba_labels()
                outputs[o.name]["labels"] = [str(x) for x in labels]
        card = {"config": self.art.config.model_dump(mode="json"), "metrics": self.art.metrics}
        return {"inputs": self.columns, "outputs": outputs, "backend": self.backend,
                "model_card": card}  # fmt: skip


def create_app(
    model_dir: str | Path,
    backend: Literal["torch", "onnx"] = "torch",
    data_dir: str | Path | None = None,
    max_body_bytes: int = 16 * 2**20,
    max_rows: int = 1024,
) -> FastAPI:
    served = Served(model_dir, backend, data_dir)
    Body = S.request_model(served.columns, max_rows)
    app = FastAPI(title="polymodal model server", version="1")
    app.add_exception_handler(RequestValidationError, S.validation_error)  # type: ignore[arg-type]

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metadata")
    def metadata() -> dict[str, Any]:
        return served.metadata()

    @app.post("/predict", response_model=PredictResponse)
    def predict(body: Body) -> Any:  # type: ignore[valid-type]
        return served.predict([r.model_dump() for r in body.rows])  # type: ignore[attr-defined]

    async def upload(request: Request, **values: Any) -> Any:
        try:
            record = await S.form_record(served.columns, request, values)
        except S.CellError as err:
            return JSONResponse(status_code=422, content={"detail": str(err)})
        return served.predict([record])

    upload.__signature__ = S.form_signature(served.columns)  # type: ignore[attr-defined]
    app.post(
        "/predict/upload",
        response_model=PredictResponse,
        summary="Predict one row sent as a multipart form (image/audio as file uploads)",
    )(upload)
    add_search_route(app, served.art, model_dir, served.data_dir)  # when the model has an index
    return app


class BodyLimit:
    """413 for a body whose declared length is over the limit, before it is read. A plain ASGI
    middleware: Starlette's ``BaseHTTPMiddleware`` costs about a millisecond per request."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = dict(scope["headers"]).get(b"content-length", b"")
            if size.isdigit() and int(size) > self.max_bytes:
                detail = f"request body is {size.decode()} bytes; the limit is {self.max_bytes}"
                await JSONResponse(status_code=413, content={"detail": detail})(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)


def _filled(value: Any) -> bool:
    """An uploaded file, or a non-blank base64 / path string (None and blanks are missing)."""
    return isinstance(value, bytes) or (value is not None and bool(value.strip()))


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
