import pytest

from polymodal.config import ConfigError, load_config, to_yaml

BASE = """
inputs:
  - {name: review, type: text}
  - {name: tab, type: numeric, columns: [age, height]}
outputs:
  - {name: label, task: binary}
"""


def test_defaults_filled():
    cfg = load_config(BASE)
    assert cfg.inputs[0].encoder == {"type": "text_cnn"}
    assert cfg.inputs[1].cols == ["age", "height"]
    assert cfg.fusion == {"type": "concat"}
    assert cfg.trainer.epochs == 10
    assert load_config(to_yaml(cfg)) == cfg  # round trip


def test_error_names_key():
    with pytest.raises(ConfigError, match=r"trainer.epochs"):
        load_config(BASE + "trainer: {epochs: many}\n")
    with pytest.raises(ConfigError, match=r"inputs.0.type"):
        load_config("inputs: [{name: a, type: video}]\noutputs: [{name: y, task: binary}]")
    with pytest.raises(ConfigError, match=r"trainer.epoch"):
        load_config(BASE + "trainer: {epoch: 3}\n")


def test_target_as_feature_is_a_leak():
    with pytest.raises(ConfigError, match="leak"):
        load_config(BASE + "  - {name: age, task: regression}\n")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
