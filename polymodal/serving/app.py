"""HTTP serving: a FastAPI app around one loaded model (loaded once; each request only
preprocesses its rows and runs the network). Concurrent requests are computed together
(:mod:`.batching`); ``GET /metrics`` reports requests, latency and batch sizes. Requests are
described by :mod:`.schema`, from the model's own input columns, so the OpenAPI schema,
validation and error messages share one description. Never imports the training code.

Bad input is a 4xx naming the row and field, and every status a route can answer is in the
OpenAPI schema: 422 for a cell, row or body that cannot be used (pydantic's errors: missing /
extra field, wrong type, NaN, malformed JSON; undecodable base64, a path outside the allowed
folder, an unreadable image/audio cell; a malformed or truncated form), 413 for a body over
``max_body_bytes`` (counted as it arrives) or files that would decode to more than
``max_decode_bytes``, 415 for an upload that is not a form. Messages name no server folder.
"""

# no ``from __future__ import annotations``: FastAPI reads the endpoint's annotations, and the
# request model is built at run time inside ``create_app``
import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from polymodal.data.base import DataError
from polymodal.evaluation.predict import predict_frame
from polymodal.export.artifact import Artifact, load_artifact
from polymodal.serving import schema as S
from polymodal.serving.batching import MicroBatcher
from polymodal.serving.limits import BodyLimit, DecodeBudget
from polymodal.serving.metrics import MeasureRequests, Metrics
from polymodal.serving.search import add_search_route

MAX_BATCH = 64  # rows per computed batch
TEXT_GROUP = 8  # rows of similar text length computed together (see Served.compute)
DISCONNECT_POLL_S = 0.05  # how often a waiting request checks that its client is still there


class Prediction(BaseModel):
    outputs: dict[str, Any]  # output -> {"label", "probabilities"} or {"value"}
    missing_modalities: list[str]


class PredictResponse(BaseModel):
    predictions: list[Prediction]


class Served:
    """The loaded model and what each request needs from it."""

    def __init__(
        self,
        model_dir: str | Path,
        backend: str,
        data_dir: str | Path | None,
        max_decode_bytes: int,
    ) -> None:
        if backend not in ("torch", "onnx"):
            raise ValueError(f"backend must be torch or onnx, got {backend!r}")
        self.art: Artifact = load_artifact(model_dir)
        self.backend = backend
        self.runner = None
        self.onnx_path: Path | None = None  # model.onnx on the ONNX backend (/search: its towers)
        if backend == "onnx":
            from polymodal.export.onnx import OnnxModel

            onnx_path = Path(model_dir) / "model.onnx"
            if not onnx_path.exists():
                raise FileNotFoundError(
                    f"{onnx_path} not found: run `polymodal export {model_dir}` first"
                )
            self.runner, self.onnx_path = OnnxModel(onnx_path), onnx_path
        self.data_dir = Path(data_dir).resolve() if data_dir else None
        self.max_decode_bytes = max_decode_bytes
        self.columns = S.input_columns(self.art)
        self.files = {c: k for c, k in self.columns.items() if k in S.FILE_TYPES}
        self.texts = [c for c, kind in self.columns.items() if kind == "text"]

    def compute(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Records whose file cells ``read_files`` has prepared -> one prediction per record
        (several requests' records at once, when micro-batched). Text is padded to the longest
        text of a batch, so a batch of texts runs as groups of similar length (sorted by their
        length): 64 clothing reviews in groups of 8 run 1.4x faster than in one batch."""
        if not self.texts or len(records) <= TEXT_GROUP:
            return self._compute(records)
        order = sorted(range(len(records)), key=lambda i: _text_length(records[i], self.texts))
        out: list[dict[str, Any]] = [{}] * len(records)
        try:
            for start in range(0, len(order), TEXT_GROUP):
                group = order[start : start + TEXT_GROUP]
                for i, row in zip(group, self._compute([records[i] for i in group]), strict=True):
                    out[i] = row
        except Exception:  # again in the records' own order, so the error names the right row
            return self._compute(records)
        return out

    def _compute(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        frame = pd.DataFrame.from_records(records, columns=list(self.columns))
        # path cells are relative to the data folder by now; bytes are decoded in memory
        base_dir = self.data_dir or Path()
        out = predict_frame(
            self.art.model, self.art.pipeline, frame, base_dir, "<request>", self.runner
        )
        return [_row(self.art, out, i) for i in range(len(out))]

    def read_files(self, records: list[dict[str, Any]]) -> None:
        """Each file cell -> what the preprocessing reads (bytes, or a path inside the data
        folder), in place. A cell repeated in a column is decoded from base64 and measured once
        (and the preprocessing decodes equal bytes once); the request's files must fit the decode
        budget (a 413 otherwise)."""
        seen: dict[tuple[str, str | bytes], bytes | str] = {}
        budget = DecodeBudget(self.max_decode_bytes, self.data_dir)
        for i, rec in enumerate(records):
            for col, kind in self.files.items():
                cell = rec[col]
                if isinstance(cell, list) or not _filled(cell):  # an inline series, or missing
                    continue
                if (col, cell) not in seen:
                    target = S.file_cell(cell, i, col, kind, self.data_dir)
                    budget.spend(kind, target, i, col)
                    seen[col, cell] = target
                rec[col] = seen[col, cell]

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
    max_decode_bytes: int = 512 * 2**20,  # what one request's files may decode to, together
    max_batch: int = MAX_BATCH,  # rows computed together, from concurrent requests
    max_wait_ms: float = 0.0,  # how long a batch waits for more requests (0: takes what is queued)
) -> FastAPI:
    served = Served(model_dir, backend, data_dir, max_decode_bytes)
    Body = S.request_model(served.columns, max_rows, S.cell_checks(served.art))
    metrics = Metrics()
    batcher = MicroBatcher(served.compute, max_batch, max_wait_ms / 1000, metrics.batch)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        batcher.close()  # the server stops taking requests first; queued ones are finished

    app = FastAPI(title="polymodal model server", version="1", lifespan=lifespan)
    app.add_exception_handler(RequestValidationError, S.validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(MeasureRequests, metrics=metrics)

    async def answer(records: list[dict[str, Any]], request: Request) -> Any:
        """The response for one request's records: files read here, the network in batches."""
        try:
            await run_in_threadpool(served.read_files, records)
            rows = await _computed(batcher, records, request, metrics)
        except (S.CellError, DataError, ValueError, OSError) as err:  # the cell's fault
            return S.error(422, S.public(str(err), served.data_dir))
        if rows is None:  # the client is gone: nothing to answer
            return Response(status_code=499)
        return {"predictions": rows}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metadata")
    def metadata() -> dict[str, Any]:
        return served.metadata()

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus() -> str:
        return metrics.text()

    @app.post("/predict", response_model=PredictResponse, responses=S.ERRORS)
    async def predict(body: Body, request: Request) -> Any:  # type: ignore[valid-type]
        return await answer([r.model_dump() for r in body.rows], request)  # type: ignore[attr-defined]

    async def upload(request: Request, **values: Any) -> Any:
        try:
            record = await S.form_record(served.columns, request, values)
        except ValueError as err:  # a CellError, or a form without any of the fields
            return S.error(422, str(err))
        return await answer([record], request)

    upload.__signature__ = S.form_signature(served.columns)  # type: ignore[attr-defined]
    app.router.add_api_route(
        "/predict/upload",
        upload,
        methods=["POST"],
        response_model=PredictResponse,
        responses=S.UPLOAD_ERRORS,
        summary="Predict one row sent as a multipart form (image/audio as file uploads)",
        route_class_override=FormRoute,
    )
    add_search_route(
        app, served.art, model_dir, served.data_dir, max_decode_bytes, served.onnx_path
    )
    return app


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


async def _computed(
    batcher: MicroBatcher, records: list[dict[str, Any]], request: Request, metrics: Metrics
) -> list[dict[str, Any]] | None:
    """The records' predictions from the batcher; None (and the request's jobs cancelled, so
    they cost no compute) when the client disconnects while waiting."""
    futures = batcher.submit(records)
    metrics.queue(len(records))
    done = asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
    try:
        while True:
            try:
                parts = await asyncio.wait_for(asyncio.shield(done), DISCONNECT_POLL_S)
                return [row for part in parts for row in part]
            except TimeoutError:
                if await request.is_disconnected():
                    done.cancel()
                    for f in futures:
                        f.cancel()
                    return None
    finally:
        metrics.queue(-len(records))


class FormRoute(APIRoute):
    """A route whose body must be a complete form: the body (already within the size limit) is
    read first, so another content type is a 415 and a truncated multipart body a 422 before
    FastAPI's form parser, which would take either for a form with every field missing."""

    def get_route_handler(self) -> Handler:
        parse = super().get_route_handler()

        async def handler(request: Request) -> Response:
            problem = S.form_problem(request.headers.get("content-type"), await request.body())
            return S.error(*problem) if problem else await parse(request)

        return handler


async def http_error(request: Request, exc: HTTPException) -> Response:
    """FastAPI answers a body its parsers reject (e.g. invalid multipart data) with a bare 400;
    it is a 422 here, like malformed JSON, so every refusal of a body has one documented code."""
    if exc.status_code == 400:
        return S.error(422, f"the request body cannot be parsed: {exc.detail}")
    return await http_exception_handler(request, exc)


def _text_length(record: dict[str, Any], columns: list[str]) -> int:
    return sum(len(v) for c in columns if isinstance(v := record.get(c), str))


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
