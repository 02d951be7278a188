"""A retrieval model's towers exported to ONNX: each side's embeddings match PyTorch, search on
the ONNX backend (API and CLI) finds what PyTorch finds, and the errors a user meets there (no
index saved, no exported tower, an unreadable query image) say what was expected."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from polymodal import Predictor
from polymodal.cli import app
from polymodal.data.base import DataError
from polymodal.export import index as ix
from polymodal.export import towers as tw
from tests.export.test_index import config
from tests.tables import make_table

ATOL = 1e-4
QUERIES = ["red class1 blue", "green class2", "dark class0 loud", "quiet"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A trained image <-> text model, exported to ONNX, with an index of each side."""
    folder = tmp_path_factory.mktemp("towers")
    frame = make_table(folder, n=40)
    frame.to_csv(folder / "table.csv", index=False)
    pred = Predictor(config()).fit(frame, output_dir=folder / "m", base_dir=folder)
    report = pred.export_onnx(folder / "table.csv", folder / "m" / "model.onnx", rows=16)
    for column in ("photo", "review"):
        pred.index(folder / "table.csv", column)
    return folder, report


def test_both_towers_export_with_parity(exported):
    folder, report = exported
    assert report["max_abs_diff"] <= ATOL  # the whole model, as before
    assert set(report["towers"]) == {"match.photo", "match.review"}
    for part in report["towers"].values():
        assert part["max_abs_diff"] <= ATOL and "batch1" in part["by_case"]
    assert (folder / "m" / "model.match.photo.onnx").exists()
    assert (folder / "m" / "model.match.review.onnx").exists()
    # every row of the table, embedded by each ONNX tower and by PyTorch
    art = Predictor.load(folder / "m").artifact_
    _, head = ix.retrieval_head(art)
    frame = pd.read_csv(folder / "table.csv")
    for inp in art.config.inputs:
        runner = tw.load_tower(folder / "m" / "model.onnx", "match", inp.name)
        ref, ref_present = ix.embed(art, head, inp, frame, folder, "t")
        got, present = ix.embed(art, head, inp, frame, folder, "t", runner=runner)
        assert present.all() and (present == ref_present).all()
        assert np.abs(got - ref).max() <= ATOL
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_onnx_backend_search_finds_what_torch_finds(exported):
    folder, _ = exported
    torch_pred = Predictor.load(folder / "m")
    onnx_pred = Predictor.load(folder / "m", backend="onnx")

    def refuse(*args, **kwargs):
        raise AssertionError("the ONNX backend ran a PyTorch encoder")

    for encoder in onnx_pred.artifact_.model.encoders.values():
        encoder.forward = refuse
    a = torch_pred.search(text=QUERIES, k=5, column="photo")
    b = onnx_pred.search(text=QUERIES, k=5, column="photo")
    assert a[["query", "rank", "id"]].equals(b[["query", "rank", "id"]])
    assert np.allclose(a["score"], b["score"], atol=ATOL)
    images = [folder / "img" / f"{i}.png" for i in (0, 7, 11)]
    a = torch_pred.search(image=images, k=5, column="review")
    b = onnx_pred.search(image=images, k=5, column="review")
    assert a[["query", "rank", "id"]].equals(b[["query", "rank", "id"]])
    assert np.allclose(a["score"], b["score"], atol=ATOL)


def test_onnx_search_without_exported_towers_says_to_export(exported, tmp_path):
    folder, _ = exported
    pred = Predictor.load(folder / "m", backend="onnx")
    pred.model_dir_ = tmp_path  # a folder holding no tower graphs
    with pytest.raises(FileNotFoundError, match=r"model\.match\.review\.onnx not found.*export"):
        pred.search(text="red", column="photo", model_dir=folder / "m")


def test_searching_a_model_with_no_index_saved(exported, tmp_path):
    folder, _ = exported
    pred = Predictor.load(folder / "m")
    pred.save(tmp_path / "bare")  # the same model, without its index folder
    with pytest.raises(FileNotFoundError, match=r"has no index: build one with `polymodal index"):
        Predictor.load(tmp_path / "bare").search(text="red")
    out = CliRunner().invoke(app, ["search", str(tmp_path / "bare"), "--text", "red"])
    assert out.exit_code == 2 and "has no index: build one with `polymodal index" in out.output


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_unreadable_query_image_names_what_was_expected(exported, tmp_path, backend):
    folder, _ = exported
    pred = Predictor.load(folder / "m", backend=backend)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"bad\.png: expected a readable image"):
        pred.search(image=tmp_path / "bad.png", column="review")
    with pytest.raises(DataError, match=r"cannot read .*gone\.png: expected a readable image"):
        pred.search(image=tmp_path / "gone.png", column="review")
    args = ["search", str(folder / "m"), "--image", str(tmp_path / "bad.png")]
    out = CliRunner().invoke(app, [*args, "--column", "review", "--backend", backend])
    assert out.exit_code == 2 and "expected a readable image" in out.output


def test_cli_search_on_the_onnx_backend(exported):
    folder, _ = exported
    runner = CliRunner()
    args = ["search", str(folder / "m"), "--text", "green class2", "-k", "3", "--column", "photo"]
    torch_out = runner.invoke(app, args)
    onnx_out = runner.invoke(app, [*args, "--backend", "onnx"])
    assert onnx_out.exit_code == 0, onnx_out.output
    assert len(onnx_out.output.strip().splitlines()) == 4  # header + 3 rows
    ids = [line.split()[1] for line in onnx_out.output.strip().splitlines()[1:]]
    assert ids == [line.split()[1] for line in torch_out.output.strip().splitlines()[1:]]
    out = runner.invoke(app, [*args, "--backend", "tensorrt"])
    assert out.exit_code == 2 and "backend must be 'torch' or 'onnx'" in out.output


def test_cli_export_writes_the_towers(exported, tmp_path):
    folder, _ = exported
    Predictor.load(folder / "m").save(tmp_path / "m")
    out = CliRunner().invoke(
        app, ["export", str(tmp_path / "m"), "--data", str(folder / "table.csv"), "--rows", "8"]
    )
    assert out.exit_code == 0, out.output
    parity = json.loads((tmp_path / "m" / "onnx_parity.json").read_text())
    assert max(t["max_abs_diff"] for t in parity["towers"].values()) <= ATOL
    assert (tmp_path / "m" / "model.match.review.onnx").exists()
