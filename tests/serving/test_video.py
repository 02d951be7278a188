"""Serving a model with a video input and an audio input reading the same clips' sound track: a
clip as a path inside --data-dir, as base64, as an upload (size-limited); a path outside the
data folder, a text file posing as a clip and a clip over the decode budget are 4xx naming the
row and field; the ONNX backend answers like PyTorch."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient

from polymodal import Predictor
from polymodal.serving.app import create_app
from tests.tables import add_video, make_table, video_config
from tests.videos import moving_square, write_clip


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve_video")
    frame = add_video(make_table(folder, n=15), folder)
    cfg = video_config("video_r21d")
    cfg["inputs"] = [i for i in cfg["inputs"] if i["name"] in ("clip", "sound", "numeric")]
    Predictor(cfg).fit(frame, base_dir=folder).save(folder / "model")
    Predictor.load(folder / "model").export_onnx(frame, folder / "model" / "model.onnx",
                                                 base_dir=folder)  # fmt: skip
    client = TestClient(create_app(folder / "model", data_dir=folder, max_body_bytes=2**20))
    return folder, frame, client


def rows(clip: object, age: float = 30.0) -> dict:
    return {"rows": [{"clip": clip, "age": age}]}


def test_a_clip_by_path_base64_or_upload(served):
    folder, frame, client = served
    clip = (folder / "clips" / "1.mp4").read_bytes()
    answers = [
        client.post("/predict", json=rows("clips/1.mp4", float(frame.loc[1, "age"]))),
        client.post("/predict", json=rows(base64.b64encode(clip).decode(), frame.loc[1, "age"])),
        client.post(
            "/predict/upload", data={"age": str(frame.loc[1, "age"])},
            files={"clip": ("c.mp4", clip)},
        ),
    ]  # fmt: skip
    want = Predictor.load(folder / "model").predict(frame.iloc[1:2], base_dir=folder)
    for res in answers:
        assert res.status_code == 200, res.text
        got = res.json()["predictions"][0]
        assert got["outputs"]["label"]["label"] == want["label"].iloc[0]
        assert got["missing_modalities"] == []
    silent = client.post("/predict", json=rows("clips/4.mp4"))  # a clip without sound
    assert silent.json()["predictions"][0]["missing_modalities"] == ["sound"]
    missing = client.post("/predict", json=rows(None))
    assert set(missing.json()["predictions"][0]["missing_modalities"]) == {"clip", "sound"}


def test_onnx_backend_serves_the_same_answer(served):
    folder, _, client = served
    onnx = TestClient(create_app(folder / "model", backend="onnx", data_dir=folder))
    body = rows("clips/2.mp4")
    want = client.post("/predict", json=body).json()["predictions"][0]["outputs"]["label"]
    got = onnx.post("/predict", json=body).json()["predictions"][0]["outputs"]["label"]
    assert got["label"] == want["label"]
    for k, p in want["probabilities"].items():
        assert abs(got["probabilities"][k] - p) <= 1e-4


def test_bad_clips_are_4xx_naming_row_and_field(served, tmp_path):
    folder, _, client = served
    (folder / "clips" / "notes.mp4").write_text("not a clip")
    res = client.post("/predict", json=rows("clips/notes.mp4"))
    assert res.status_code == 422 and "row 0, column 'clip'" in res.text and "notes.mp4" in res.text
    assert str(folder) not in res.text  # no server path
    outside = write_clip(tmp_path / "outside.mp4", moving_square(0))
    res = client.post("/predict", json=rows(str(outside)))
    assert res.status_code == 422 and "row 0, field 'clip'" in res.text
    big = write_clip(tmp_path / "big.mp4", moving_square(0, 2, size=1024))  # 16 x 1 Mpx held
    small = TestClient(create_app(folder / "model", data_dir=folder, max_decode_bytes=2**20))
    res = small.post(
        "/predict/upload", data={"age": "3"}, files={"clip": ("b.mp4", big.read_bytes())}
    )
    assert res.status_code == 413 and "field 'clip'" in res.text
    res = client.post("/predict/upload", data={"age": "3"}, files={"clip": ("x.mp4", b"0" * 2**21)})
    assert res.status_code == 413  # over --max-body-mb, cut off as it arrives
