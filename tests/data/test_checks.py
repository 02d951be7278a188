"""Modality inference that never raises, and the column checks that protect a newcomer: leaks
(another target), identifiers, constant and mostly missing columns, --drop / --keep."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from polymodal.data.base import DataError
from polymodal.data.checks import id_like_name, identifier, shared_information
from polymodal.data.infer import infer_modality, infer_table, looks_like_path


def _hostile_cells(tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG\r\n\x1a\n")
    secret.chmod(0)
    return {
        "long_text": ["word " * 400 + str(i) for i in range(60)],  # 2 KB cells, one per row
        "long_token": ["x" * 300 + str(i) for i in range(60)],  # one 300-byte "file name"
        "emoji": [f"loved it 😍🔥 {i} 👗✨ would buy again" for i in range(60)],
        "nul": [f"bad\x00cell {i}" for i in range(60)],
        "surrogate": [f"broken \ud800 text {i}" for i in range(60)],
        "numbers_as_text": [f"{i * 1.5:.2f}" for i in range(60)],
        "mixed": [i if i % 2 else f"v{i % 5}" for i in range(60)],
        "locked_file": [str(secret)] * 60,  # a path the OS refuses to open
        "dicts": [{"a": i} for i in range(60)],
        "lists": [[i, i + 1] for i in range(60)],  # numbers: a (2-step) time series
        "word_lists": [["red", f"v{i}"] for i in range(60)],  # a list no input type reads
        "newlines": [f"line one\nline two {i}" for i in range(60)],
        "label": ["a", "b", "c"] * 20,
    }


def test_inference_never_raises_on_hostile_cells(tmp_path):
    cells = _hostile_cells(tmp_path)
    frame = pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in cells.items()})
    found = infer_table(frame, "label", tmp_path)
    kinds = found.kinds
    assert kinds["long_text"] == "text" and kinds["emoji"] == "text"
    assert kinds["numbers_as_text"] == "numeric" and "dicts" not in kinds
    assert kinds["lists"] == "timeseries" and "word_lists" not in kinds
    assert kinds["long_token"] == "text"  # 300 bytes without a separator: not a file name
    skipped = {f.column: f.kind for f in found.findings if f.drop}
    assert skipped["word_lists"] == "unsupported" and skipped["dicts"] == "unsupported"
    assert skipped["surrogate"] == "error"  # reported with its column, init goes on
    from polymodal.config import load_config

    load_config(found.config)  # the starter config is valid as written


def test_path_test_is_cheap_and_total():
    assert looks_like_path("img/1.png") and not looks_like_path("a" * 300 + ".png")
    assert not looks_like_path("a/" * 5000) and not looks_like_path("x\x00.png")
    assert not looks_like_path("") and not looks_like_path("two\nlines.wav")
    many = pd.Series(["a/" * 2100 + f"{i}.png" for i in range(50)])
    assert infer_modality(many, None) != "image"  # never handed to the OS as a path


def _leaky_table(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rating = rng.choice([1, 2, 3, 4, 5], n, p=[0.05, 0.07, 0.13, 0.22, 0.53])
    recommended = np.where(rating >= 4, 1, np.where(rating <= 2, 0, rng.integers(0, 2, n)))
    flip = rng.random(n) < 0.03
    recommended = np.where(flip, 1 - recommended, recommended)
    return pd.DataFrame({
        "item_id": rng.integers(0, 300, n),
        "row_id": np.arange(n) + 1000,
        "age": rng.integers(18, 80, n),
        "dept": rng.choice(["tops", "dresses", "jackets"], n),
        "text": [f"review words {i} and more words" for i in range(n)],
        "constant": "same",
        "mostly_missing": [float(i) if i % 50 == 0 else None for i in range(n)],
        "rating": rating,
        "recommended": recommended,
    })  # fmt: skip


@pytest.mark.parametrize(
    ("target", "other"), [("recommended", "rating"), ("rating", "recommended")]
)
def test_another_target_is_flagged_both_ways(target, other):
    frame = _leaky_table()
    found = infer_table(frame, target)
    by_col = {f.column: f for f in found.findings}
    assert by_col[other].kind == "leak" and by_col[other].drop
    assert other not in str(found.config["inputs"]) and other in found.config["dropped"]
    assert "age" in found.kinds and "dept" in found.kinds  # honest columns stay
    for col in ("age", "dept", "item_id"):
        assert shared_information(frame[col], frame[target]) < 0.1


def test_identifiers_constants_missing():
    frame = _leaky_table()
    found = infer_table(frame, "recommended")
    by_col = {f.column: f for f in found.findings}
    assert by_col["row_id"].kind == "identifier" and by_col["row_id"].drop
    assert by_col["constant"].drop and "constant" in by_col["constant"].message
    assert by_col["mostly_missing"].kind == "missing" and by_col["mostly_missing"].drop
    assert identifier(frame["item_id"].rename("item_id")) == "repeated"
    assert found.kinds["item_id"] == "categorical"  # an id with repeats: a category, not a number
    assert id_like_name("Clothing ID") and id_like_name("userId") and id_like_name("uuid")
    assert not id_like_name("paid") and not id_like_name("valid")


def test_drop_and_keep():
    frame = _leaky_table()
    found = infer_table(frame, "recommended", drop=["age"], keep=["rating"])
    assert "age" not in found.kinds and found.config["dropped"]["age"].startswith("dropped")
    assert found.kinds["rating"] == "categorical"
    kept = next(f for f in found.findings if f.column == "rating")
    assert not kept.drop and "--keep" in kept.message
    with pytest.raises(DataError, match="no column 'nope'"):
        infer_table(frame, "recommended", drop=["nope"])


def test_text_of_few_values_is_a_category():
    depts = ["Intimate apparel and sleepwear", "Tops for every day", "Dresses and skirts"]
    frame = pd.DataFrame({"dept": depts * 40, "y": [0, 1] * 60})
    assert infer_table(frame, "y").kinds["dept"] == "categorical"


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"x": [1, 2, 3]}), "target column 'y' is not in the table"),
        (pd.DataFrame({"x": range(30), "y": 1}), "one value"),
        (pd.DataFrame({"x": range(30), "y": [None] * 30}), "every cell is missing"),
        (pd.DataFrame({"y": [0, 1] * 15}), "no usable input columns"),
        (pd.DataFrame({"x": [None] * 30, "y": [0, 1] * 15}), r"'x': every cell is missing"),
    ],
)
def test_bad_targets_and_tables_are_one_line_errors(frame, message):
    with pytest.raises(DataError, match=message) as err:
        infer_table(frame, "y")
    assert "\n" not in str(err.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_not_a_path(tmp_path):
    cells = _hostile_cells(tmp_path)
    assert infer_modality(pd.Series(cells["locked_file"]), tmp_path) in ("image", None)
