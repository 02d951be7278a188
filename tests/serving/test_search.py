"""POST /search over a model with a stored index: text and base64 image queries, and 422s that
name what was expected."""

import base64
import json

import pytest
from fastapi.testclient import TestClient

from polymodal import Predictor
from polymodal.serving.app import create_app
from tests.export.test_index import config
from tests.tables import make_table


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    folder = tmp_path_factory.mktemp("search")
    frame = make_table(folder, n=24)
    Predictor(config(epochs=1)).fit(frame, output_dir=folder / "m", base_dir=folder)
    loaded = Predictor.load(folder / "m")
    loaded.index(frame, "photo", base_dir=folder)
    loaded.index(frame, "review", base_dir=folder)
    return folder, TestClient(create_app(folder / "m", data_dir=folder))


def test_text_and_image_queries(client):
    folder, http = client
    r = http.post("/search", json={"text": "red class1", "k": 3, "column": "photo"})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert [h["rank"] for h in hits] == [1, 2, 3] and hits[0]["value"].startswith("img/")
    image = base64.b64encode((folder / "img" / "2.png").read_bytes()).decode()
    r = http.post("/search", json={"image": image, "k": 2, "column": "review"})
    assert r.status_code == 200, r.text
    assert len(r.json()["hits"]) == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"text": "red", "column": "review"}, "query it with image"),
        ({"text": " ", "column": "photo"}, "empty text query"),
        ({"text": "red", "k": 99, "column": "photo"}, "collection size"),
        ({"image": "not base64!", "column": "review"}, "expected base64-encoded image"),
        ({"text": "red"}, "several indexes"),
        ({"column": "photo"}, "exactly one of 'text' or 'image'"),
        ({"image": "data:", "column": "review"}, "without a comma"),
        ({"image": "data:image/png;base64,", "column": "review"}, "decodes to no bytes"),
        ({"image": "a./" * 2000, "column": "review"}, "too long for a file path"),
    ],
)
def test_bad_search_requests_are_422(client, body, message):
    _, http = client
    r = http.post("/search", json=body)
    assert r.status_code == 422 and message in r.json()["detail"], r.text


def test_search_text_with_a_lone_surrogate_is_422(client):
    _, http = client
    body = json.dumps({"text": "red \ud800", "column": "photo"})  # json.dumps escapes it
    r = http.post("/search", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert "lone surrogate" in r.json()["detail"][0]["message"], r.text
