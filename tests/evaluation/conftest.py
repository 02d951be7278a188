"""Small trained models shared by the explanation and report tests (trained once per session)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polymodal import Predictor
from tests.tables import config_for, make_table

WORDS = ["soft", "red", "small", "dress", "fits", "size", "blue", "warm", "nice", "long"]


@pytest.fixture(scope="session")
def five_table(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """48 rows with text, image, audio, numeric and categorical columns (tests/tables.py)."""
    folder = tmp_path_factory.mktemp("five")
    frame = make_table(folder, n=48)
    frame.to_csv(folder / "table.csv", index=False)
    return folder, frame


def _train(cfg: dict, folder: Path, out: Path) -> Path:
    cfg["data"] = {"train": str(folder / "table.csv"), "seed": 0}
    for inp in cfg["inputs"]:  # narrow CNNs: these tests are about explanations, not accuracy
        if inp["type"] in ("image", "audio"):
            inp["encoder"] |= {"channels": [8, 16], "out_dim": 32}
    Predictor(cfg).fit(output_dir=out)
    return out


@pytest.fixture(scope="session")
def concat_model(five_table, tmp_path_factory) -> Path:
    """Concat fusion, two outputs: ``label`` (3 classes) and ``flag`` (binary)."""
    cfg = config_for("concat", epochs=1)
    cfg["outputs"].append({"name": "flag", "task": "binary"})
    return _train(cfg, five_table[0], tmp_path_factory.mktemp("concat") / "model")


@pytest.fixture(scope="session")
def attention_model(five_table, tmp_path_factory) -> Path:
    cfg = config_for("attention", epochs=1, d_model=16, layers=1)
    return _train(cfg, five_table[0], tmp_path_factory.mktemp("attention") / "model")


def signal_table(n: int, seed: int) -> pd.DataFrame:
    """Only the text carries the binary label (the word "great" or "awful"); the numeric and
    categorical columns are noise."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    rows = []
    for y in label:
        words = list(rng.choice(WORDS, 5))
        words.insert(int(rng.integers(0, 6)), "great" if y else "awful")
        rows.append(
            {
                "review": " ".join(words),
                "age": float(rng.normal(40, 10)),
                "colour": str(rng.choice(["red", "green", "blue"])),
                "label": "yes" if y else "no",
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def signal_model() -> Predictor:
    cfg = {
        "inputs": [
            {"name": "review", "type": "text", "encoder": {"type": "bow", "embed_dim": 16}},
            {"name": "numeric", "type": "numeric", "columns": ["age"]},
            {"name": "colour", "type": "categorical"},
        ],
        "fusion": {"type": "concat"},
        "outputs": [{"name": "label", "task": "binary"}],
        "data": {"seed": 0},
        "trainer": {"epochs": 6, "batch_size": 32, "lr": 0.01, "progress": False,
                    "early_stopping_patience": None, "seed": 0},
    }  # fmt: skip
    return Predictor(cfg).fit(signal_table(300, seed=0))
