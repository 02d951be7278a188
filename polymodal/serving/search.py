"""``POST /search``: top-k rows of the model's stored vector index for a text or an image query
(the other side of the retrieval pair), e.g. ``{"text": "grinning face", "k": 5}``. The index is
read once, at start-up; a model without one serves no ``/search``. On the ONNX backend the queries
are embedded by the retrieval towers ``polymodal export`` writes beside ``model.onnx``
(:mod:`polymodal.export.towers`); a missing tower stops the server at start-up, saying to run the
export. Errors are 422s naming what was expected (wrong modality, empty text, unreadable image,
k beyond the collection, an index built by another model); never imports the training code."""

# no ``from __future__ import annotations``: FastAPI reads the endpoint's annotations
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from polymodal.data.base import DataError
from polymodal.export import index as ix
from polymodal.export import towers as tw
from polymodal.export.artifact import Artifact
from polymodal.serving import schema as S
from polymodal.serving.limits import DecodeBudget


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: S.Text | None = Field(None, description="text query")
    image: S.Text | None = Field(None, description="image query: base64, a data: URI, or a path inside --data-dir")  # fmt: skip
    k: int = Field(10, ge=1, description="how many rows to return")
    column: str | None = Field(None, description="which index, when the model has several")


class Hit(BaseModel):
    rank: int
    id: Any
    score: float
    value: Any  # the indexed cell (e.g. the image path)


class SearchResponse(BaseModel):
    hits: list[Hit]


def add_search_route(app: FastAPI, art: Artifact, model_dir: str | Path, data_dir: Path | None, max_decode_bytes: int, onnx: Path | None = None) -> None:  # fmt: skip
    """Mount ``POST /search`` when ``model_dir`` holds at least one index. ``onnx``: the served
    ``model.onnx`` (the ONNX backend), whose retrieval towers embed the queries; each index's
    query tower is opened here, so a missing one fails now rather than at the first query."""
    names = ix.list_indexes(model_dir)
    if not names:
        return
    indexes = {n: ix.load_index(model_dir, n) for n in names}
    if onnx is not None:
        _open_query_towers(art, indexes.values(), onnx)

    @app.post("/search", response_model=SearchResponse, responses=S.ERRORS,
              summary="Nearest rows of the stored index")  # fmt: skip
    def search(body: SearchRequest) -> Any:
        try:
            return {"hits": _search(art, indexes, body, data_dir, max_decode_bytes, onnx)}
        except (S.CellError, DataError, ValueError, OSError) as err:
            return S.error(422, S.public(str(err), data_dir))


def _open_query_towers(art: Artifact, indexes: Iterable[ix.SearchIndex], onnx: Path) -> None:
    """Open the ONNX tower that embeds each index's queries (the pair's other side); raises
    FileNotFoundError naming the file and the `polymodal export` that writes it. An index that
    another model built is skipped: every query to it is a 422 saying to rebuild it."""
    fingerprint = ix.fingerprint(art)
    for si in indexes:
        if si.meta["fingerprint"] != fingerprint:
            continue
        _, head = ix.retrieval_head(art, si.meta["output"])
        for name in head.pair:
            if name != si.meta["input"]:
                tw.load_tower(onnx, si.meta["output"], name)


def _search(art: Artifact, indexes: dict[str, ix.SearchIndex], body: SearchRequest, data_dir: Path | None, max_decode_bytes: int, onnx: Path | None) -> list[dict[str, Any]]:  # fmt: skip
    if (body.text is None) == (body.image is None):
        raise ValueError("send exactly one of 'text' or 'image'")
    if body.column is None and len(indexes) > 1:
        raise ValueError(f"the model has several indexes {sorted(indexes)}: name one in 'column'")
    name = ix.index_name(body.column) if body.column is not None else next(iter(indexes))
    if name not in indexes:
        raise ValueError(f"no index of column {body.column!r}; valid choices: {sorted(indexes)}")
    si = indexes[name]
    if body.text is not None:
        hits = ix.search(art, si, [body.text], "text", body.k, onnx=onnx)
    else:
        image = S.file_cell(str(body.image), 0, "image", "image", data_dir)
        DecodeBudget(max_decode_bytes, data_dir).spend("image", image, 0, "image")
        hits = ix.search(art, si, [image], "image", body.k, base_dir=data_dir, onnx=onnx)
    column = si.meta["column"]
    return [{"rank": int(r["rank"]), "id": r["id"], "score": float(r["score"]), "value": r[column]}
            for r in hits.to_dict("records")]  # fmt: skip
