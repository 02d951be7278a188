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

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from polymodal import __version__
from polymodal.compression.prune import fit_shapes
from polymodal.compression.quantize import INT8, quantize_torch
from polymodal.config import ConfigError, ExperimentConfig, load_config, to_yaml
from polymodal.data.pipeline import TablePipeline
from polymodal.models import MultimodalModel, build_model
from polymodal.utils.errors import ArtifactError
from polymodal.utils.io import atomic_write_text, write_json

T = TypeVar("T")

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
    _drop_stale(path, art)
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


def _drop_stale(path: Path, art: Artifact) -> None:
    """Files of a model saved here before that would outlive it: its ONNX graphs (which
    ``serve``, ``search`` and ``compress`` would otherwise run instead of the new weights), its
    compression report, and metrics / history / data summary the new model does not have."""
    stale = [path / "model.onnx", path / "model.onnx.data", path / "compression.json"]
    stale += path.glob("model.*.onnx")  # retrieval towers (export.towers.tower_path)
    for name, kept in (("metrics.json", art.metrics), ("history.json", art.history),
                       ("data_summary.json", art.summary)):  # fmt: skip
        if not kept:
            stale.append(path / name)
    for file in stale:
        file.unlink(missing_ok=True)


def load_artifact(path: str | Path) -> Artifact:
    """The saved model in ``path``. Nothing in it is executed (YAML, JSON and safetensors only);
    a file that is missing, truncated or not what polymodal wrote raises :class:`ArtifactError`
    naming the file and what was expected."""
    path = Path(path)
    missing = [f for f in FILES if not (path / f).exists()]
    if missing:
        raise FileNotFoundError(f"{path} is not a polymodal model directory: missing {missing}")
    config = _parse(path / "config.yaml", load_config, "the experiment config polymodal saved")
    state = _json(path / "preprocessing.json", dict, "the fitted preprocessing")
    pipeline = _parse(
        path / "preprocessing.json",
        lambda _: _pipeline(state, config),
        "the fitted preprocessing of the inputs and outputs in config.yaml",
    )
    build = _json(path / "model.json", dict, "the model's build facts (specs, num_outputs)")
    build.pop("polymodal_version", None)
    model = _parse(
        path / "model.json",
        lambda _: build_model(
            config, build["specs"], build["num_outputs"], build.get("class_weights")
        ),
        "specs and num_outputs that build the model in config.yaml",
    )
    _load_weights(model, path / "model.safetensors")
    model.eval()
    if build.get("quantization") == INT8:  # int8 from the fp32 weights, at load time
        quantize_torch(model)
    metrics = _json(path / "metrics.json", dict, "evaluation reports", optional=True)
    history = _json(path / "history.json", list, "the training history", optional=True)
    summary = _json(path / "data_summary.json", dict, "the training table's summary", optional=True)
    return Artifact(config, pipeline, model, build, metrics, history, summary)


def _brief(err: BaseException, limit: int = 300) -> str:
    """An exception as one short line: its type and its message with whitespace collapsed."""
    text = " ".join(str(err).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _parse(file: Path, parse: Callable[[Path], T], expected: str) -> T:
    """``parse(file)``, with any failure but one already naming its file turned into an
    :class:`ArtifactError` naming ``file`` and what was expected."""
    try:
        return parse(file)
    except ArtifactError:
        raise
    except ConfigError as err:
        raise ArtifactError(f"{file}: expected {expected}; {' '.join(str(err).split())}") from None
    except Exception as err:  # a broken file must never surface as a traceback
        raise ArtifactError(f"{file}: expected {expected} ({_brief(err)})") from None


def _json(file: Path, kind: type[T], expected: str, optional: bool = False) -> T:
    """A JSON file holding a ``kind`` (dict or list); an absent optional file gives ``kind()``."""
    if optional and not file.exists():
        return kind()
    try:
        value = json.loads(file.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ArtifactError(f"{file}: expected JSON with {expected} ({_brief(err)})") from None
    if not isinstance(value, kind):
        raise ArtifactError(
            f"{file}: expected a JSON {'object' if kind is dict else 'array'} with {expected}, "
            f"got {type(value).__name__}"
        )
    return value


def _pipeline(state: dict[str, Any], config: ExperimentConfig) -> TablePipeline:
    pipeline = TablePipeline.from_state(state, config.inputs, config.outputs)
    lost = [i.name for i in config.inputs if i.name not in pipeline.preprocessors]
    lost += [o.name for o in config.outputs if o.name not in pipeline.targets]
    if lost:
        raise ValueError(f"nothing fitted for {lost}")
    return pipeline


PICKLE_STARTS = (b"\x80", b"PK\x03\x04")  # pickle protocol 2+, torch.save's zip archive


def _load_weights(model: MultimodalModel, file: Path) -> None:
    """Weights from safetensors only (never a pickle), checked against the built model."""
    try:
        state = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as err:
        with open(file, "rb") as fh:
            head = fh.read(4)
        what = (
            "it looks like a pickle / torch.save file, which polymodal never loads"
            if head.startswith(PICKLE_STARTS)
            else _brief(err)
        )
        raise ArtifactError(f"{file}: expected weights in safetensors format; {what}") from None
    try:
        _check_names(model, state)
        fit_shapes(model, state)  # a structurally pruned model has smaller layers than its config
        model.load_state_dict(state)
    except (RuntimeError, ValueError, TypeError) as err:
        raise ArtifactError(
            f"{file}: expected the weights of the model in config.yaml / model.json; {_brief(err)}"
        ) from None
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ArtifactError(
                f"{file}: expected finite weights; tensor {key!r} holds NaN or infinity"
            )


def _check_names(model: MultimodalModel, state: dict[str, torch.Tensor]) -> None:
    """Every tensor the model has, none it lacks, each with the model's number of dimensions
    (sizes may differ: a structurally pruned model is resized to its weights)."""
    params = model.state_dict()
    optional = {k for k in params if k.endswith("num_batches_tracked")}
    problems = {
        "unexpected tensors": sorted(set(state) - set(params)),
        "missing tensors": sorted(set(params) - set(state) - optional),
        "tensors of the wrong rank": [
            f"{k} {tuple(v.shape)} (expected {params[k].dim()}-d)"
            for k, v in state.items()
            if k in params and v.dim() != params[k].dim()
        ],
    }
    found = [f"{what} {names[:3]}" for what, names in problems.items() if names]
    if found:
        raise ValueError("; ".join(found))
