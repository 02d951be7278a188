"""Reading tables, splits, targets, modality inference."""

import numpy as np
import pandas as pd
import pytest
import torch

from polymodal.config import DataConfig
from polymodal.data import DataError, TargetEncoder, class_weights_balanced, read_table, split_frame
from polymodal.data.infer import infer_modality, infer_task, starter_config


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_read_table_formats(tmp_path, suffix):
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    path = tmp_path / f"t{suffix}"
    {".csv": lambda: frame.to_csv(path, index=False), ".parquet": lambda: frame.to_parquet(path),
     ".jsonl": lambda: frame.to_json(path, orient="records", lines=True)}[suffix]()  # fmt: skip
    pd.testing.assert_frame_equal(read_table(path), frame, check_dtype=False)


def test_read_table_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_table(tmp_path / "nope.csv")
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(DataError, match="unknown table format"):
        read_table(tmp_path / "t.xlsx")


def test_split_column_and_stratified():
    frame = pd.DataFrame({"y": [0, 1] * 50, "s": ["train"] * 80 + ["valid"] * 10 + ["test"] * 10})
    tr, va, te = split_frame(frame, DataConfig(split_column="s"), "y")
    assert (len(tr), len(va), len(te)) == (80, 10, 10)
    tr, va, te = split_frame(frame, DataConfig(val_fraction=0.2, test_fraction=0.2, seed=1), "y")
    assert len(tr) + len(va) + len(te) == 100 and len(te) == 20
    assert va["y"].mean() == 0.5  # stratified
    again = split_frame(frame, DataConfig(val_fraction=0.2, test_fraction=0.2, seed=1), "y")[2]
    assert te.index.equals(again.index)  # seeded
    frame.loc[3, "s"] = "holdout"
    with pytest.raises(DataError, match=r"row 3, column 's'.*'holdout'"):
        split_frame(frame, DataConfig(split_column="s"), "y", "t.csv")


def test_targets_round_trip_and_errors():
    enc = TargetEncoder("multiclass").fit(pd.Series(["b", "a", "c", "a"], name="y"))
    assert enc.classes == ["a", "b", "c"]
    assert enc.transform(pd.Series(["c", "a"], name="y")).tolist() == [2, 0]
    assert enc.decode(torch.tensor([1])) == ["b"]
    with pytest.raises(DataError, match=r"row 1, column 'y'.*'z'.*known labels"):
        enc.transform(pd.Series(["a", "z"], name="y"), source="t.csv")
    with pytest.raises(DataError, match="only one class"):
        TargetEncoder("binary").fit(pd.Series([1, 1], name="y"))
    with pytest.raises(DataError, match="use task: multiclass"):
        TargetEncoder("binary").fit(pd.Series([1, 2, 3], name="y"))
    with pytest.raises(DataError, match=r"row 1, column 'y'.*missing"):
        TargetEncoder("binary").fit(pd.Series([1, None, 0], name="y"))
    reg = TargetEncoder("regression").fit(pd.Series([1.0, 3.0], name="r"))
    z = reg.transform(pd.Series([1.0, 3.0], name="r"))
    assert torch.allclose(reg.inverse(z), torch.tensor([1.0, 3.0], dtype=torch.float64))
    ml = TargetEncoder("multilabel").fit(pd.Series(["a|b", "b", ["c"]], name="m"))
    assert ml.transform(pd.Series(["a|c"], name="m")).tolist() == [[1.0, 0.0, 1.0]]
    assert TargetEncoder.from_state(ml.state_dict()).classes == ["a", "b", "c"]


def test_balanced_class_weights():
    w = class_weights_balanced(torch.tensor([0, 0, 0, 1]), "multiclass", 2)
    assert w == pytest.approx([4 / 6, 2.0])
    assert class_weights_balanced(torch.tensor([0.0, 0.0, 0.0, 1.0]), "binary", 1) == pytest.approx(
        [3.0]
    )


def test_infer_modalities_and_starter_config(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "review": [f"this is review number {i} and it is fine" for i in range(40)],
        "photo": [f"img/{i}.jpg" for i in range(40)],
        "voice": [f"clips/{i}.wav" for i in range(40)],
        "age": rng.normal(40, 10, 40),
        "stars": rng.integers(1, 4, 40),
        "brand": rng.choice(["x", "y", "z"], 40),
        "label": rng.choice(["good", "bad"], 40),
        "const": 1,
    })  # fmt: skip
    kinds = {c: infer_modality(frame[c]) for c in frame.columns}
    assert kinds == {"review": "text", "photo": "image", "voice": "audio", "age": "numeric",
                     "stars": "categorical", "brand": "categorical", "label": "categorical", "const": None}  # fmt: skip
    assert infer_task(frame["label"]) == "binary" and infer_task(frame["age"]) == "regression"
    cfg = starter_config(frame, "label")
    names = {i["name"]: i for i in cfg["inputs"]}
    assert names["numeric"]["columns"] == ["age"] and names["categorical"]["columns"] == [
        "stars",
        "brand",
    ]
    assert "label" not in str(cfg["inputs"])
    from polymodal.config import load_config

    load_config(cfg)
