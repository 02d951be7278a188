"""Serving a model with a time-series input: a series as a JSON list of lists (or of numbers for
one channel), as a base64 or data-folder CSV / .npy, as an uploaded file; wrong channel counts,
non-numbers, NaN and series over max_steps are 422s naming the row and field; the OpenAPI
schema stays valid under schemathesis."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import schemathesis
from fastapi.testclient import TestClient
from schemathesis import GenerationMode
from schemathesis.checks import (
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from polymodal import Predictor
from polymodal.serving.app import create_app
from tests.serving.test_app import _fuzz
from tests.tables import add_series, make_table, series_config


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve_series")
    frame = add_series(make_table(folder, n=30), folder)
    cfg = series_config("concat", epochs=1)
    cfg["inputs"] = [i for i in cfg["inputs"] if i["name"] in ("motion", "numeric")]
    cfg["inputs"][-1]["preprocessing"] = {"max_steps": 40}
    Predictor(cfg).fit(frame, base_dir=folder).save(folder / "model")
    client = TestClient(create_app(folder / "model", data_dir=folder))
    return folder, frame, client


def rows(series: object, age: float = 30.0) -> dict:
    return {"rows": [{"motion": series, "age": age}]}


def test_a_series_as_json_lists_predicts_like_the_table(served):
    folder, frame, client = served
    steps = np.load(folder / "series" / "0.npy")
    cell = [[None if np.isnan(v) else float(v) for v in step] for step in steps]  # gaps as null
    res = client.post("/predict", json=rows(cell, float(frame.loc[0, "age"])))
    assert res.status_code == 200, res.text
    got = res.json()["predictions"][0]
    want = Predictor.load(folder / "model").predict(frame.head(1), base_dir=folder)
    assert got["outputs"]["label"]["label"] == want["label"].iloc[0]
    assert got["missing_modalities"] == []
    for empty in (None, []):  # missing and empty series: a missing modality
        res = client.post("/predict", json=rows(empty))
        assert res.status_code == 200 and res.json()["predictions"][0]["missing_modalities"] == [
            "motion"
        ]
    schema = client.get("/openapi.json").json()["components"]["schemas"]["Row"]
    assert "motion" in schema["required"] and client.get("/metadata").json()["inputs"] == {
        "age": "numeric", "motion": "timeseries"
    }  # fmt: skip


def test_a_series_file_by_path_base64_or_upload(served):
    folder, _, client = served
    csv = (folder / "series" / "1.csv").read_bytes()
    answers = [
        client.post("/predict", json=rows("series/1.csv")),
        client.post("/predict", json=rows(base64.b64encode(csv).decode())),
        client.post("/predict/upload", data={"age": "30"}, files={"motion": ("s.csv", csv)}),
    ]
    labels = set()
    for res in answers:
        assert res.status_code == 200, res.text
        labels.add(res.json()["predictions"][0]["outputs"]["label"]["label"])
    assert len(labels) == 1


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ([[1.0, 2.0]] * 5, "2 channel(s) per step; expected 3"),
        ([1.0, 2.0, 3.0], "1 channel(s) per step; expected 3"),
        ([[1.0, 2.0, 3.0]] * 41, "41 time steps; expected at most 40"),
        ([[1.0, 2.0, 3.0], [1.0, 2.0]], "ragged series: step 1 has 2 values"),
        ([[1.0, "a", 3.0]], "Input should be a valid number"),
        ([[1.0, True, 3.0]], "Input should be a valid number"),
        ("%%% not base64", "expected base64-encoded timeseries bytes"),
    ],
)
def test_bad_series_are_422_naming_row_and_field(served, cell, message):
    _, _, client = served
    res = client.post("/predict", json=rows(cell))
    assert res.status_code == 422, res.text
    detail = res.json()["detail"]
    text = detail if isinstance(detail, str) else " ".join(e["message"] for e in detail)
    assert "row 0, field 'motion'" in text and message in text, text


def test_nan_in_a_series_is_422_and_a_broken_upload_names_the_column(served):
    _, _, client = served
    body = json.dumps(rows([[1.0, float("nan"), 3.0]]))  # Python writes NaN
    res = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert res.status_code == 422 and "row 0, field 'motion'" in res.text
    res = client.post(
        "/predict/upload", data={"age": "3"}, files={"motion": ("s.csv", b"x,y,z\n1,2\n")}
    )
    assert res.status_code == 422 and "column 'motion'" in res.json()["detail"], res.text
    assert "ragged CSV" in res.json()["detail"]


def test_openapi_fuzz_finds_no_5xx(served):
    schema = schemathesis.openapi.from_asgi("/openapi.json", served[2].app)
    (op,) = [r.ok() for r in schema.get_all_operations() if r.ok().path == "/predict"]
    checks = [not_a_server_error, status_code_conformance, response_schema_conformance]
    _fuzz(op, GenerationMode.POSITIVE, checks)()
    _fuzz(op, GenerationMode.NEGATIVE, [*checks, negative_data_rejection])()


def test_a_long_series_is_windowed_like_the_table(tmp_path):
    """A model over windows: a request's long series is cut the same way, and each row gets
    one answer, the one ``predict`` gives the table."""
    frame = add_series(make_table(tmp_path, n=24), tmp_path, inline=True)
    frame["motion"] = [steps * 4 for steps in frame["motion"]]  # 32 to 96 steps
    cfg = series_config("concat", epochs=1)
    cfg["inputs"] = [i for i in cfg["inputs"] if i["name"] in ("motion", "numeric")]
    cfg["inputs"][-1]["preprocessing"] = {"window": 16, "stride": 8, "max_length": 128}
    Predictor(cfg).fit(frame, base_dir=tmp_path).save(tmp_path / "model")
    client = TestClient(create_app(tmp_path / "model"))
    body = {"rows": [{"motion": frame.loc[r, "motion"], "age": float(frame.loc[r, "age"])}
                     for r in (0, 1)]}  # fmt: skip
    res = client.post("/predict", json=body)
    assert res.status_code == 200, res.text
    got = res.json()["predictions"]
    want = Predictor.load(tmp_path / "model").predict(frame.head(2), base_dir=tmp_path)
    assert len(got) == 2
    for r in (0, 1):
        probs = got[r]["outputs"]["label"]["probabilities"]
        assert probs["cat"] == pytest.approx(float(want["label_proba_cat"].iloc[r]), abs=1e-5)
