"""Vector index beside a saved retrieval model: build, save, load, search (API and CLI), the
index kinds, and every bad input named in the error."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from polymodal import Predictor
from polymodal.cli import app
from polymodal.data.base import DataError
from polymodal.export import index as ix
from tests.tables import make_table


def config(epochs=2):
    return {
        "inputs": [
            {"name": "photo", "type": "image", "encoder": {"type": "image_cnn", "channels": [8, 16]},
             "preprocessing": {"image_size": 16}},
            {"name": "review", "type": "text", "encoder": {"type": "bow", "embed_dim": 16}},
        ],
        "outputs": [{"name": "match", "task": "retrieval", "pair": ["photo", "review"],
                     "head": {"dim": 16, "hidden": 32}}],
        "trainer": {"epochs": epochs, "batch_size": 16, "lr": 0.01, "progress": False},
    }  # fmt: skip


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("retrieval")
    frame = make_table(folder, n=40)
    frame.to_csv(folder / "table.csv", index=False)
    Predictor(config()).fit(frame, val=frame, output_dir=folder / "m", base_dir=folder)
    return folder


def test_metrics_have_recall_and_median_rank_both_ways(model):
    metrics = json.loads((model / "m" / "metrics.json").read_text())["val"]["match"]
    for direction in ("photo_to_review", "review_to_photo"):
        assert 0 <= metrics[f"{direction}_R@1"] <= metrics[f"{direction}_R@10"] <= 1
        assert metrics[f"{direction}_median_rank"] >= 1
    assert metrics["n_pairs"] == 40


def test_index_save_load_and_search(model):
    pred = Predictor.load(model / "m")
    info = pred.index(model / "table.csv", "photo", id_column="label")
    assert info["kind"] == "flat" and info["size"] == 40 and info["modality"] == "image"
    assert (model / "m" / "index" / "photo.faiss").exists()
    meta = json.loads((model / "m" / "index" / "photo.json").read_text())
    assert meta["ids"][:3] == ["cat", "dog", "eel"] and meta["values"][0] == "img/0.png"
    hits = Predictor.load(model / "m").search(text="red class1 blue", k=5)
    assert list(hits.columns) == ["query", "rank", "id", "score", "photo"]
    assert hits["rank"].tolist() == [1, 2, 3, 4, 5]
    assert hits["score"].is_monotonic_decreasing
    # the scores are the model's own cosine similarities
    loaded = ix.load_index(model / "m", "photo")
    art = pred.artifact_
    _, head = ix.retrieval_head(art)
    text_input = next(i for i in art.config.inputs if i.name == "review")
    q, _ = ix.embed(
        art, head, text_input, hits.head(1).assign(review="red class1 blue"), model, "q"
    )
    img_input = next(i for i in art.config.inputs if i.name == "photo")
    frame = pd.read_csv(model / "table.csv")
    g, _ = ix.embed(art, head, img_input, frame, model, "t")
    assert np.isclose(hits["score"].iloc[0], (g @ q[0]).max(), atol=1e-5)
    assert loaded.size == 40


def test_bad_queries_name_what_was_expected(model, tmp_path):
    pred = Predictor.load(model / "m")
    pred.index(model / "table.csv", "photo")
    with pytest.raises(ix.SearchError, match=r"holds image embeddings.*query it with text"):
        pred.search(image=model / "img" / "1.png", column="photo")
    with pytest.raises(ValueError, match="empty text query"):
        pred.search(text="   ", column="photo")
    with pytest.raises(ValueError, match=r"k=41 must be between 1 and the collection size \(40"):
        pred.search(text="red", k=41, column="photo")
    pred.index(model / "table.csv", "review")  # now an index of texts, queried by images
    with pytest.raises(DataError, match=r"cannot read .*nope\.png: expected a readable image"):
        pred.search(image=model / "nope.png", column="review")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"bad\.png: expected a readable image"):
        pred.search(image=tmp_path / "bad.png", column="review")
    with pytest.raises(ix.SearchError, match="several indexes"):
        pred.search(text="red")
    with pytest.raises(ix.SearchError, match="column 'label' is not a side of the retrieval pair"):
        pred.index(model / "table.csv", "label")


def test_index_of_another_model_is_refused(model, tmp_path):
    pred = Predictor.load(model / "m")
    pred.index(model / "table.csv", "photo", model_dir=tmp_path)
    with torch.no_grad():  # the same architecture with other weights: another fingerprint
        next(pred.artifact_.model.parameters()).add_(0.1)
    with pytest.raises(ix.SearchError, match="built with a different model"):
        pred.search(text="red", model_dir=tmp_path)


def test_cli_index_and_search(model):
    runner = CliRunner()
    out = runner.invoke(
        app, ["index", str(model / "m"), str(model / "table.csv"), "--column", "photo"]
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["kind"] == "flat"
    out = runner.invoke(
        app, ["search", str(model / "m"), "--text", "green class2", "-k", "3", "--column", "photo"]
    )
    assert out.exit_code == 0, out.output
    assert len(out.output.strip().splitlines()) == 4  # header + 3 rows
    out = runner.invoke(app, ["search", str(model / "m"), "--text", "", "--column", "photo"])
    assert out.exit_code == 2 and "empty text query" in out.output


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_index_kinds_find_true_neighbours(kind):
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 32))
    x = centres[rng.integers(0, 20, 2000)] + 0.3 * rng.standard_normal((2000, 32))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    index, chosen, params = ix.make_index(x, kind)
    assert chosen == kind and (kind == "flat") == (params == {})
    _, found = index.search(x[:50], 10)
    exact = np.argsort(-(x[:50] @ x.T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact, strict=True)])
    assert recall >= 0.9
    assert ix.make_index(x, "auto")[1] == "flat"


def test_auto_keeps_ivf_only_where_it_holds_its_recall():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 32))
    clustered = centres[rng.integers(0, 20, 4000)] + 0.3 * rng.standard_normal((4000, 32))
    _, chosen, params = ix.make_index(clustered.astype(np.float32), "auto", exact_below=1000)
    assert chosen == "ivf" and params["sample_recall@10"] >= ix.MIN_RECALL
    noise = rng.standard_normal((4000, 32)).astype(np.float32)  # no structure to use
    _, chosen, params = ix.make_index(noise, "auto", exact_below=1000)
    assert chosen == "flat" and "IVF needed more than" in params["reason"]


def test_index_reads_only_inside_the_table_folder(model, tmp_path):
    """An index table is data like any other: its path cells may not leave its folder."""
    frame = pd.read_csv(model / "table.csv").head(3)
    frame["photo"] = str(model / "img" / "0.png")  # absolute, outside tmp_path
    frame.to_csv(tmp_path / "outside.csv", index=False)
    with pytest.raises(DataError, match=r"is outside the table's folder.*data.allow_outside"):
        Predictor.load(model / "m").index(tmp_path / "outside.csv", "photo", model_dir=tmp_path)
