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


def test_read_table_tsv_json_array_and_gzip(tmp_path):
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    frame.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    frame.to_json(tmp_path / "t.json", orient="records")  # an array, not lines
    frame.to_csv(tmp_path / "t.csv.gz", index=False)
    for name in ("t.tsv", "t.json", "t.csv.gz"):
        pd.testing.assert_frame_equal(read_table(tmp_path / name), frame, check_dtype=False)
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataError, match=r"bad.parquet: could not be read"):
        read_table(tmp_path / "bad.parquet")


def test_split_edge_cases():
    frame = pd.DataFrame({"y": [["a"], ["b"]] * 20, "s": ["val"] * 40})
    tr, va, te = split_frame(frame, DataConfig(), "y")  # list labels: stratified as strings
    assert len(tr) + len(va) + len(te) == 40 and set(tr.index).isdisjoint(te.index)
    with pytest.raises(DataError, match="no row as 'train'"):
        split_frame(frame, DataConfig(split_column="s"), "y")
    with pytest.raises(DataError, match="sum < 1"):
        split_frame(frame, DataConfig(val_fraction=0.5, test_fraction=0.5), "y")


def test_target_tasks():
    binary = TargetEncoder("binary").fit(pd.Series([True, False, True], name="b"))
    assert binary.classes == [False, True]  # positive = the second sorted class
    assert binary.transform(pd.Series([True, False], name="b")).tolist() == [1.0, 0.0]
    ints = TargetEncoder("multiclass").fit(pd.Series([3.0, 1.0, 2.0], name="y"))
    assert (
        ints.classes == [1, 2, 3] and ints.transform(pd.Series([2], name="y")).dtype == torch.long
    )
    with pytest.raises(DataError, match="no labels at all"):
        TargetEncoder("multilabel").fit(pd.Series([[], []], name="m"))
    with pytest.raises(DataError, match=r"row 1, column 'r'.*expected a number.*'high'"):
        TargetEncoder("regression").fit(pd.Series([1.0, "high"], name="r"))
    with pytest.raises(ValueError, match="unknown task"):
        TargetEncoder("ranking")
    ml = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert class_weights_balanced(ml, "multilabel", 2) == pytest.approx([1 / 3, 3.0])


def test_infer_file_cells(tmp_path):
    import io as _io

    import soundfile as sf
    from PIL import Image

    png, wav = _io.BytesIO(), _io.BytesIO()
    Image.new("RGB", (4, 4)).save(png, "PNG")
    sf.write(wav, np.zeros(80, dtype=np.float32), 8000, format="WAV")
    (tmp_path / "blob1").write_bytes(wav.getvalue())
    cases = {
        "image": [png.getvalue()] * 3,
        "audio": [wav.getvalue()] * 3,
        "hf_image": [{"bytes": png.getvalue(), "path": None}] * 3,
        "sniffed": ["blob1"] * 3,  # no extension: the file's magic bytes say WAV
        "lists": [["a"], ["b"], ["a", "b"]],
    }
    kinds = {k: infer_modality(pd.Series(v), tmp_path) for k, v in cases.items()}
    assert kinds == {"image": "image", "audio": "audio", "hf_image": "image",
                     "sniffed": "audio", "lists": None}  # fmt: skip
    assert infer_task(pd.Series(cases["lists"])) == "multilabel"
    assert infer_task(pd.Series(["a|b", "b", "c|a", "a"])) == "multilabel"
    assert infer_task(pd.Series([1, 2, 3, 2])) == "multiclass"


def test_starter_config_names_stay_unique():
    frame = pd.DataFrame({
        "numeric": [f"a long review text number {i}" for i in range(30)],
        "x": np.linspace(0, 1, 30),
        "y": [0, 1] * 15,
    })  # fmt: skip
    cfg = starter_config(frame, "y")
    names = sorted(i["name"] for i in cfg["inputs"])
    assert names == ["numeric", "numeric_features"] and cfg["outputs"][0]["task"] == "binary"
    with pytest.raises(DataError, match="not in the table"):
        starter_config(frame, "nope")
