"""Every way a cell or a body can be malformed is a 4xx naming the row and field, never a 5xx,
and never names a folder of the server (issue 17): data: URIs, base64 padding, paths, lone
surrogates, booleans where a number or category is expected, and forms that are not forms."""

import base64
import json
import tempfile

import httpx2 as httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serving.util import row, upload

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@pytest.mark.parametrize("photo", ["data:", "data:abc", "data:image/png;base64", "data:,", "data:image/png;base64,", "data:;base64,@@@@"])  # fmt: skip
def test_malformed_data_uris_are_422(served, photo):
    _, frame, client = served
    res = client.post("/predict", json={"rows": [row(frame, 1), row(frame, 2, photo=photo)]})
    assert res.status_code == 422, res.text
    assert res.json()["detail"].startswith("row 1, field 'photo': expected"), res.text


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"review": "good \ud800 bad"}, "review"),  # a lone surrogate, as JSON's \ud800 escape
        ({"size": "\udfff"}, "size"),
        ({"photo": "img/\ud800.png"}, "photo"),
        ({"size": False}, "size"),  # a boolean is no category
        ({"age": True}, "age"),  # nor a number
    ],
)
def test_unusable_values_name_row_and_field(served, change, field):
    _, frame, client = served
    body = json.dumps({"rows": [row(frame, 1), row(frame, 2, **change)]})  # ensure_ascii escapes
    res = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert res.status_code == 422, res.text
    detail = res.json()["detail"]
    messages = [e["message"] for e in detail] if isinstance(detail, list) else [detail]
    assert any(m.startswith(f"row 1, field {field!r}") for m in messages), messages


@pytest.mark.parametrize(
    ("photo", "expected"),
    [
        (base64.b64encode(b"not an image").decode(), "cannot read <12 bytes>"),
        ("broken.png", "cannot read broken.png"),  # a data-folder file, by its relative path
        ("missing.png", "no such file"),
    ],
)
def test_errors_name_no_server_folder(served, photo, expected):
    folder, frame, client = served
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    res = client.post("/predict", json={"rows": [row(frame, 1, photo=photo)]})
    assert res.status_code == 422, res.text
    detail = res.json()["detail"]
    assert "row 0" in detail and "'photo'" in detail and expected in detail, detail
    assert str(folder) not in detail and tempfile.gettempdir() not in detail, detail


def _form(folder, frame):
    data, files = upload(folder, row(frame, 1))
    request = httpx.Request("POST", "http://x", data=data, files=files)
    return request.read(), request.headers["content-type"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        ("json", "application/json", 415, "expected a multipart/form-data body"),
        ("json", None, 415, "no content type"),
        ("half", "form", 422, "incomplete"),
        ("full", "multipart/form-data", 422, "no boundary"),
        ("junk", "form", 422, "incomplete"),
        ("empty", "multipart/form-data; boundary=b", 422, "every input is missing"),
    ],
)
def test_upload_of_a_non_form_is_4xx(served, body, content_type, status, message):
    folder, frame, client = served
    raw, form_type = _form(folder, frame)
    content = {"json": json.dumps({"rows": [row(frame, 1)]}).encode(), "half": raw[: len(raw) // 2],
               "full": raw, "junk": b"\x00\xff" * 50, "empty": b"--b--\r\n"}[body]  # fmt: skip
    headers = {"content-type": form_type if content_type == "form" else content_type}
    res = client.post("/predict/upload", content=content, headers={k: v for k, v in headers.items() if v})  # fmt: skip
    assert res.status_code == status and message in res.json()["detail"], res.text


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(cut=st.integers(0, 10**6))
def test_a_form_cut_anywhere_before_its_end_is_422(served, cut):
    folder, frame, client = served
    raw, form_type = _form(folder, frame)
    cut = cut % raw.rindex(b"--\r\n")  # anywhere before the closing boundary's last dashes
    res = client.post("/predict/upload", content=raw[:cut], headers={"content-type": form_type})
    assert res.status_code == 422, res.text


def test_openapi_documents_every_status(served):
    schema = served[2].get("/openapi.json").json()
    predict = schema["paths"]["/predict"]["post"]["responses"]
    upload_ = schema["paths"]["/predict/upload"]["post"]["responses"]
    assert {"200", "413", "422"} <= set(predict) and {"200", "413", "415", "422"} <= set(upload_)
    size = schema["components"]["schemas"]["Row"]["properties"]["size"]
    assert {t.get("type") for t in size["anyOf"]} == {"string", "integer", "number", "null"}


def _base64s():
    encoded = st.binary(max_size=48).map(lambda b: base64.b64encode(b).decode())
    padded = st.tuples(encoded, st.integers(0, 3)).map(lambda t: t[0].rstrip("=") + "=" * t[1])
    return st.one_of(encoded, padded, st.text(alphabet=B64 + "=", max_size=24))


UNICODE = st.text(st.characters(codec=None, exclude_categories=[]), max_size=12)  # surrogates too
PARTS = ["..", ".", "", "img", "wav", "0.png", "3.wav", "model", "config.yaml", "x" * 300, "etc",
         "passwd", "\x00", "\ud800"]  # fmt: skip
PATHS = st.tuples(
    st.sampled_from(["", "/", "~/", "../"]), st.lists(st.sampled_from(PARTS), max_size=6)
).map(lambda t: t[0] + "/".join(t[1]))
DATA_URIS = st.tuples(
    st.sampled_from(["", "image/png", "audio/wav", "text/plain;charset=utf-8", "\ud800"]),
    st.sampled_from(["", ";base64", ";BASE64"]),
    st.sampled_from(["", ","]),
    st.one_of(_base64s(), UNICODE),
).map(lambda t: "data:" + "".join(t))
FILE_CELLS = st.one_of(st.none(), _base64s(), PATHS, DATA_URIS, UNICODE)
VALUES = st.one_of(st.none(), UNICODE, st.integers(), st.floats(), st.booleans())


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(photo=FILE_CELLS, voice=FILE_CELLS, review=VALUES, size=VALUES, age=VALUES)
def test_random_cells_are_200_or_4xx(served, photo, voice, review, size, age):
    """The cell formats as a hostile client writes them; the server answers 200 or a 4xx (an
    exception in the app would raise here), and no answer names a server folder."""
    folder, frame, client = served
    cells = {"photo": photo, "voice": voice, "review": review, "size": size, "age": age}
    body = json.dumps({"rows": [row(frame, 1), cells]})  # NaN and \udxxx escapes included
    res = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert res.status_code in (200, 413, 422), res.text
    assert str(folder) not in res.text


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(photo=st.binary(max_size=64), review=st.text(max_size=12), age=st.text(max_size=6))
def test_random_uploads_are_200_or_4xx(served, photo, review, age):
    folder, frame, client = served
    data, files = upload(folder, row(frame, 1))
    files["photo"] = ("p.png", photo, "image/png")
    res = client.post("/predict/upload", data={**data, "review": review, "age": age}, files=files)
    assert res.status_code in (200, 422), res.text
    assert str(folder) not in res.text
