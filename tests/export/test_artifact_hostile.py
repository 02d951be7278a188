"""Broken or hostile model folders give one line naming the file and what was expected, and
nothing in them is ever executed (no pickle, no YAML tags)."""

import pickle
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from polymodal import Predictor
from polymodal.cli import app
from polymodal.encoders.efficientnet import load_weights
from polymodal.encoders.hf import HFEncoder
from polymodal.export.artifact import ArtifactError, load_artifact
from tests.tables import config_for, make_table

runner = CliRunner()
MARKER = Path("/tmp/polymodal-test-hostile-executed")


class Evil:
    """Unpickling this writes MARKER: proof that code in the file ran."""

    def __reduce__(self):
        return (MARKER.write_text, ("executed",))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    frame = make_table(folder, n=18)
    frame.to_csv(folder / "t.csv", index=False)
    Predictor(config_for(epochs=1)).fit(folder / "t.csv", output_dir=folder / "model")
    return folder / "model"


def _retensor(file: Path, change) -> None:
    state = load_file(str(file))
    change(state)
    save_file(state, str(file))


def _first_linear(state: dict) -> str:
    return next(k for k, v in state.items() if k.endswith("weight") and v.dim() == 2)


def _yaml_tag(d: Path) -> None:
    text = (d / "config.yaml").read_text()
    (d / "config.yaml").write_text(
        text + "evil: !!python/object/apply:os.system ['touch /tmp/x']\n"
    )


def _yaml_inner_tag(d: Path) -> None:
    text = (d / "config.yaml").read_text()
    (d / "config.yaml").write_text(
        text.replace("fusion:", "fusion: !!python/name:os.system\nx:", 1)
    )


BROKEN = {
    "pickle weights": ("model.safetensors", lambda d: (d / "model.safetensors").write_bytes(pickle.dumps(Evil())), "safetensors"),
    "torch.save weights": ("model.safetensors", lambda d: torch.save({"w": torch.zeros(2)}, d / "model.safetensors"), "safetensors"),
    "truncated weights": ("model.safetensors", lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:40]), "safetensors"),
    "wrong shape": ("model.safetensors", lambda d: _retensor(d / "model.safetensors", lambda s: s.update({_first_linear(s): torch.zeros(3)})), "rank"),
    "wrong size": ("model.safetensors", lambda d: _retensor(d / "model.safetensors", lambda s: s.update({"encoders.review.embedding.weight": torch.zeros(7, 16)})), "size mismatch for encoders.review.embedding.weight"),
    "extra tensor": ("model.safetensors", lambda d: _retensor(d / "model.safetensors", lambda s: s.update({"evil": torch.zeros(1)})), "unexpected tensors ['evil']"),
    "nan weights": ("model.safetensors", lambda d: _retensor(d / "model.safetensors", lambda s: s[_first_linear(s)].fill_(float("nan"))), "NaN"),
    "python tag": ("config.yaml", _yaml_tag, "python/object/apply"),
    "inner python tag": ("config.yaml", _yaml_inner_tag, "python/name"),
    "config not a mapping": ("config.yaml", lambda d: (d / "config.yaml").write_text("- 1\n"), "mapping"),
    "binary config": ("config.yaml", lambda d: (d / "config.yaml").write_bytes(b"\xff\xfe\x00\x01"), "config"),
    "truncated preprocessing": ("preprocessing.json", lambda d: (d / "preprocessing.json").write_text((d / "preprocessing.json").read_text()[:120]), "JSON"),
    "preprocessing of nothing": ("preprocessing.json", lambda d: (d / "preprocessing.json").write_text('{"inputs": {}, "targets": {}}'), "nothing fitted"),
    "garbage model.json": ("model.json", lambda d: (d / "model.json").write_bytes(b"\x00\xffgarbage"), "JSON"),
    "model.json a list": ("model.json", lambda d: (d / "model.json").write_text("[1, 2]"), "JSON object"),
    "model.json without specs": ("model.json", lambda d: (d / "model.json").write_text('{"num_outputs": {}}'), "specs"),
    "garbage metrics": ("metrics.json", lambda d: (d / "metrics.json").write_text("{nope"), "JSON"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_folder_is_one_line(model_dir, tmp_path, case):
    name, breaks, expected = BROKEN[case]
    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    breaks(folder)
    MARKER.unlink(missing_ok=True)
    with pytest.raises(ArtifactError) as err:
        load_artifact(folder)
    assert str(folder / name) in str(err.value) and expected in str(err.value)
    for command in (["info", str(folder)], ["predict", str(folder), str(folder / "x.csv")]):
        res = runner.invoke(app, command)
        assert res.exit_code == 2, res.output
        lines = res.output.strip().splitlines()
        assert lines[-1].startswith(f"error: {folder / name}: expected"), res.output
        assert "Traceback" not in res.output
    assert not MARKER.exists()


def test_intact_folder_still_loads(model_dir):
    assert runner.invoke(app, ["info", str(model_dir)]).exit_code == 0


def _hf_folder(folder: Path) -> Path:
    """A tiny BERT folder whose weights are only a pickled pytorch_model.bin."""
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=64, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=16)  # fmt: skip
    BertModel(cfg).save_pretrained(folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Evil()))
    return folder


def test_hf_folder_with_only_a_pickle(model_dir, tmp_path):
    hf = _hf_folder(tmp_path / "bert")
    MARKER.unlink(missing_ok=True)
    with pytest.raises(
        ArtifactError, match=r"model_name .*bert.*expected its weights as model\.safetensors"
    ):
        HFEncoder(modality="text", model_name=str(hf))
    folder = tmp_path / "m"  # a saved model whose text encoder names that folder
    shutil.copytree(model_dir, folder)
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    cfg["inputs"][0]["encoder"] = {"type": "hf", "model_name": str(hf)}
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    res = runner.invoke(app, ["info", str(folder)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.output.strip().splitlines()[-1].startswith(f"error: hf encoder model_name '{hf}'")
    (hf / "config.json").write_text("{truncated")
    with pytest.raises(ArtifactError, match=r"valid config\.json"):
        HFEncoder(modality="text", model_name=str(hf))
    assert not MARKER.exists()


def test_efficientnet_weights_are_never_unpickled(tmp_path):
    bad = tmp_path / "weights.pth"
    bad.write_bytes(pickle.dumps(Evil()))
    MARKER.unlink(missing_ok=True)
    with pytest.raises(ArtifactError, match=r"weights.pth: expected the EfficientNet-Lite weights"):
        load_weights(str(bad))
    assert not MARKER.exists()


def test_saving_over_a_model_drops_what_belonged_to_the_old_one(model_dir, tmp_path):
    """A model saved into a folder that held another leaves none of the old one's ONNX graphs
    or compression report behind (serve and compress would run the stale graph)."""
    folder = tmp_path / "again"
    shutil.copytree(model_dir, folder)
    for name in ("model.onnx", "model.caption.image.onnx", "compression.json"):
        (folder / name).write_text("old")
    Predictor.load(model_dir).save(folder)
    left = {p.name for p in folder.iterdir()}
    assert not {"model.onnx", "model.caption.image.onnx", "compression.json"} & left
    assert {"model.safetensors", "config.yaml", "metrics.json"} <= left
    load_artifact(folder)
