"""POST /search on the ONNX backend: the exported retrieval towers embed the queries (the PyTorch
encoders and towers never run) and find the torch server's hits; a model served without its
towers stops at start-up, saying to run `polymodal export`."""

import base64
import json
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from polymodal import Predictor
from polymodal.cli import app as cli
from polymodal.serving.app import create_app
from tests.export.test_index import config
from tests.tables import make_table

ATOL = 1e-4
TEXTS = ["red class1 blue", "green class2", "dark class0 loud", "quiet"]
IMAGES = ["img/0.png", "img/7.png", "img/11.png"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A trained image <-> text model exported to ONNX (whole model and towers), with an index
    of each side."""
    folder = tmp_path_factory.mktemp("search_onnx")
    frame = make_table(folder, n=40)
    frame.to_csv(folder / "table.csv", index=False)
    pred = Predictor(config()).fit(frame, output_dir=folder / "m", base_dir=folder)
    pred.export_onnx(folder / "table.csv", folder / "m" / "model.onnx", rows=16)
    for column in ("photo", "review"):
        pred.index(folder / "table.csv", column)
    return folder


def _queries(folder):
    """(body, ...) of every query: texts against the photo index, images (as a path inside the
    data folder and as base64) against the review index."""
    bodies = [{"text": t, "k": 5, "column": "photo"} for t in TEXTS]
    bodies += [{"image": p, "k": 5, "column": "review"} for p in IMAGES]
    encoded = base64.b64encode((folder / IMAGES[1]).read_bytes()).decode()
    return [*bodies, {"image": encoded, "k": 5, "column": "review"}]


def _hits(http, body):
    r = http.post("/search", json=body)
    assert r.status_code == 200, r.text
    return r.json()["hits"]


def _refuse(*args, **kwargs):
    raise AssertionError("the ONNX server ran PyTorch")


def test_onnx_server_finds_the_torch_servers_hits_without_pytorch(exported, monkeypatch):
    folder = exported
    torch_http = TestClient(create_app(folder / "m", data_dir=folder))
    onnx_http = TestClient(create_app(folder / "m", backend="onnx", data_dir=folder))
    bodies = _queries(folder)
    expected = [_hits(torch_http, b) for b in bodies]
    # from here on any PyTorch encoder or retrieval tower raises, in every loaded model
    model = Predictor.load(folder / "m").artifact_.model
    for module in [*model.encoders.values(), *model.heads.values()]:
        monkeypatch.setattr(type(module), "forward", _refuse)
    monkeypatch.setattr(type(model.heads["match"]), "embed", _refuse)
    with pytest.raises(AssertionError, match="ran PyTorch"):  # the patch does reach a server
        torch_http.post("/search", json=bodies[0])
    for body, want in zip(bodies, expected, strict=True):
        got = _hits(onnx_http, body)
        assert [(h["rank"], h["id"], h["value"]) for h in got] == [
            (h["rank"], h["id"], h["value"]) for h in want
        ], body
        assert np.allclose([h["score"] for h in got], [h["score"] for h in want], atol=ATOL)
    # the errors are the same 422s as on the torch backend
    r = onnx_http.post("/search", json={"text": "red", "column": "review"})
    assert r.status_code == 422 and "query it with image" in r.json()["detail"], r.text


def _without(folder, tmp_path, tower):
    """A copy of the exported model whose tower ``tower`` is missing."""
    copy = tmp_path / "m"
    shutil.copytree(folder / "m", copy)
    (copy / tower).unlink()
    return copy


def test_onnx_server_without_its_towers_fails_at_start_up(exported, tmp_path, monkeypatch):
    folder = exported
    copy = _without(folder, tmp_path, "model.match.review.onnx")  # embeds the photo index's queries
    with pytest.raises(FileNotFoundError, match=r"model\.match\.review\.onnx not found.*`polymodal export"):  # fmt: skip
        create_app(copy, backend="onnx", data_dir=folder)
    create_app(copy, data_dir=folder)  # the torch backend needs no tower
    monkeypatch.setattr("uvicorn.run", lambda *a, **k: pytest.fail("served without its towers"))
    out = CliRunner().invoke(cli, ["serve", str(copy), "--backend", "onnx"])
    assert out.exit_code == 2, out.output
    assert "model.match.review.onnx not found" in out.output and "polymodal export" in out.output


def test_an_index_of_another_model_does_not_stop_the_onnx_server(exported, tmp_path):
    """Its tower is not looked for at start-up; each query to it is the 422 saying to rebuild."""
    folder = exported
    copy = _without(folder, tmp_path, "model.match.review.onnx")
    meta = json.loads((copy / "index" / "photo.json").read_text())
    (copy / "index" / "photo.json").write_text(json.dumps({**meta, "fingerprint": "0" * 32}))
    http = TestClient(create_app(copy, backend="onnx", data_dir=folder))
    r = http.post("/search", json={"text": "red", "column": "photo"})
    assert r.status_code == 422 and "built with a different model" in r.json()["detail"], r.text
    assert len(_hits(http, {"image": IMAGES[0], "k": 3, "column": "review"})) == 3
