"""The saved model: a directory anyone can load without executing code.

config.yaml          resolved experiment config
preprocessing.json   fitted preprocessors and target encoders
model.safetensors    weights
model.json           what the builder needs besides the config (specs, output sizes)
metrics.json         evaluation report(s)
history.json         per-epoch training history
data_summary.json    the training table's columns, missing rates and target distribution
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from polymodal import __version__
from polymodal.compression.prune import fit_shapes
from polymodal.compression.quantize import INT8, quantize_torch
from polymodal.config import ExperimentConfig, load_config, to_yaml
from polymodal.data.pipeline import TablePipeline
from polymodal.models import MultimodalModel, build_model
from polymodal.utils.io import atomic_write_text, read_json, write_json

FILES = ("config.yaml", "preprocessing.json", "model.safetensors", "model.json")


@dataclass
class Artifact:
    config: ExperimentConfig
    pipeline: TablePipeline
    model: MultimodalModel
    build: dict[str, Any]  # specs / num_outputs / class_weights used to build the model
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)  # of the training table (reports)


def save_artifact(path: str | Path, art: Artifact) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path / "config.yaml", to_yaml(art.config))
    write_json(path / "preprocessing.json", art.pipeline.state_dict())
    state = {k: v.detach().cpu().contiguous() for k, v in art.model.state_dict().items()}
    tmp = path / ".model.safetensors.tmp"
    save_file(state, str(tmp), metadata={"format": "pt", "polymodal": __version__})
    tmp.replace(path / "model.safetensors")
    write_json(path / "model.json", {"polymodal_version": __version__, **art.build})
    if art.metrics:
        write_json(path / "metrics.json", art.metrics)
    if art.history:
        write_json(path / "history.json", art.history)
    if art.summary:
        write_json(path / "data_summary.json", art.summary)
    return path


def load_artifact(path: str | Path) -> Artifact:
    path = Path(path)
    missing = [f for f in FILES if not (path / f).exists()]
    if missing:
        raise FileNotFoundError(f"{path} is not a polymodal model directory: missing {missing}")
    config = load_config(path / "config.yaml")
    pipeline = TablePipeline.from_state(
        read_json(path / "preprocessing.json"), config.inputs, config.outputs
    )
    build = read_json(path / "model.json")
    build.pop("polymodal_version", None)
    model = build_model(config, build["specs"], build["num_outputs"], build.get("class_weights"))
    state = load_file(str(path / "model.safetensors"))
    fit_shapes(model, state)  # a structurally pruned model has smaller layers than its config
    model.load_state_dict(state)
    model.eval()
    if build.get("quantization") == INT8:  # int8 from the fp32 weights, at load time
        quantize_torch(model)
    metrics = read_json(path / "metrics.json") if (path / "metrics.json").exists() else {}
    history = read_json(path / "history.json") if (path / "history.json").exists() else []
    summary = read_json(path / "data_summary.json") if (path / "data_summary.json").exists() else {}
    return Artifact(config, pipeline, model, build, metrics, history, summary)
