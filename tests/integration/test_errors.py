"""Bad input gets a clear error naming the file, row, column and what was expected."""

import numpy as np
import pytest

from polymodal import Predictor
from polymodal.config import ConfigError
from polymodal.data.base import DataError
from polymodal.registry import RegistryError
from tests.tables import config_for, make_table


@pytest.fixture
def table(tmp_path):
    frame = make_table(tmp_path, n=30)
    return tmp_path, frame


def _fit(frame, folder, cfg=None, **kw):
    frame.to_csv(folder / "t.csv", index=False)
    return Predictor(cfg or config_for(epochs=1)).fit(folder / "t.csv", **kw)


def test_missing_column(table):
    folder, frame = table
    with pytest.raises(DataError, match=r"t.csv.*missing column.*'voice'"):
        _fit(frame.drop(columns=["voice"]), folder)


def test_unknown_encoder_and_wrong_kwarg():
    cfg = config_for()
    cfg["inputs"][0]["encoder"] = {"type": "nope"}
    with pytest.raises(RegistryError, match=r"unknown encoder type 'nope'; valid choices: .*bigru"):
        Predictor(cfg)
    cfg = config_for()
    cfg["fusion"] = {"type": "low_rank", "rnak": 3}
    with pytest.raises(RegistryError, match=r"fusion.*'rnak'.*valid options: .*rank"):
        Predictor(cfg)
    cfg = config_for()
    cfg["inputs"][1]["encoder"] = {"type": "bigru"}
    with pytest.raises(RegistryError, match="does not encode image inputs"):
        Predictor(cfg)


def test_unknown_fusion_is_a_config_error_before_data():
    cfg = config_for(fusion="magic")
    with pytest.raises(RegistryError, match=r"valid choices: .*attention"):
        Predictor(cfg)
    with pytest.raises(ConfigError, match=r"outputs.0.task"):
        Predictor({**config_for(), "outputs": [{"name": "label", "task": "ranking"}]})


@pytest.mark.parametrize(
    ("column", "cell", "expect"),
    [
        ("photo", "img/does_not_exist.png", "does_not_exist.png"),
        ("photo", "corrupt.png", "corrupt.png"),
        ("voice", "empty.wav", "empty.wav"),
    ],
)
def test_bad_file_cells(table, column, cell, expect):
    folder, frame = table
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    import soundfile as sf

    sf.write(folder / "empty.wav", np.zeros(0, dtype=np.float32), 8000)
    frame.loc[3, column] = cell
    with pytest.raises(DataError) as err:
        _fit(frame, folder)
    msg = str(err.value)
    assert "t.csv" in msg and "row 3" in msg and repr(column) in msg and expect in msg
    # with bad_cells: mask the row is kept with that modality masked
    cfg = config_for(epochs=1)
    cfg["data"]["bad_cells"] = "mask"
    pred = _fit(frame, folder, cfg)
    assert column in pred.predict(frame, base_dir=folder).loc[3, "missing_modalities"]


def test_nan_label_and_one_class(table):
    folder, frame = table
    bad = frame.copy()
    bad.loc[5, "label"] = None
    with pytest.raises(DataError, match=r"row 5.*'label'"):
        _fit(bad, folder)
    one = frame.copy()
    one["label"] = "cat"
    with pytest.raises(DataError, match=r"one class|single class|only one"):
        _fit(one, folder)


def test_unseen_label_at_evaluation(table):
    folder, frame = table
    pred = _fit(frame, folder)
    new = frame.copy()
    new.loc[2, "label"] = "yak"
    with pytest.raises(DataError, match=r"row 2.*'label'.*yak"):
        pred.evaluate(new, base_dir=folder)


def test_all_empty_text_column(table):
    folder, frame = table
    frame["review"] = ""
    with pytest.raises(DataError, match=r"'review'.*empty"):
        _fit(frame, folder)
