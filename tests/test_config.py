import pytest

from polymodal.config import ConfigError, apply_overrides, drop_inputs, load_config, to_yaml

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
        load_config("inputs: [{name: a, type: hologram}]\noutputs: [{name: y, task: binary}]")
    with pytest.raises(ConfigError, match=r"trainer.epoch"):
        load_config(BASE + "trainer: {epoch: 3}\n")


def test_target_as_feature_is_a_leak():
    with pytest.raises(ConfigError, match="leak"):
        load_config(BASE + "  - {name: age, task: regression}\n")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def _raw_config() -> dict:
    return {
        "inputs": [
            {"name": "review", "type": "text"},
            {"name": "title", "type": "text", "tied": "review"},
            {"name": "numeric", "type": "numeric", "columns": ["age", "price"]},
        ],
        "outputs": [{"name": "label", "task": "binary"}],
    }


def test_overrides_reach_lists_and_named_inputs():
    data = apply_overrides(
        _raw_config(),
        [
            "inputs.review.encoder.type=minilm",
            "inputs.2.columns=[age, price, weight]",
            "inputs.numeric.preprocessing={scale: robust}",
            "trainer.epochs=3",
            "outputs.label.head.hidden=64",
        ],
    )
    assert data["inputs"][0]["encoder"] == {"type": "minilm"}
    assert data["inputs"][2]["columns"] == ["age", "price", "weight"]
    assert data["outputs"][0]["head"] == {"hidden": 64} and data["trainer"]["epochs"] == 3
    cfg = load_config(data)
    assert cfg.inputs[1].encoder["type"] == "minilm"  # the tied input follows its owner


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "inputs.nope.encoder.type=bow",
            r"inputs.nope: no item named 'nope'; valid choices: \['review'",
        ),
        ("inputs.7.columns=[a]", "index 7 out of range"),
        ("trainer.epochs", "expects key=value"),
        ("trainer..epochs=3", "dotted path"),
        ("trainer.epochs=[unclosed", "not a YAML value"),
    ],
)
def test_bad_overrides_are_one_line_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(_raw_config(), [override])


def test_override_values_are_validated_like_yaml():
    with pytest.raises(ConfigError, match=r"trainer.epochs"):
        load_config(apply_overrides(_raw_config(), ["trainer.epochs=many"]))


def test_drop_input_takes_its_tied_inputs_along():
    data = drop_inputs(_raw_config(), ["review"])
    assert [i["name"] for i in data["inputs"]] == ["numeric"]
    with pytest.raises(ConfigError, match="no such input"):
        drop_inputs(_raw_config(), ["photo"])
