"""ONNX graphs of a retrieval model's towers: for each side of each retrieval output, that input's
encoder and its projection into the shared space (unit vectors out).

The whole-model graph (``model.onnx``) runs every encoder on every call, so a text query would
pay for an image encoder pass on a blank image; a tower runs one side only. ``export_towers``
writes them beside ``model.onnx`` as ``model.<output>.<input>.onnx``, each checked against
PyTorch like the whole model (:func:`~polymodal.export.onnx.export_checked`: the rows as they
are, batch 1, other sequence lengths, masked rows); ``search`` on the ONNX backend embeds its
queries with them. A tower's graph inputs are ``<input>`` and ``<input>__mask``, its output
``embedding`` (B, dim), all zeros where the mask is False.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from polymodal.export.onnx import OnnxModel, Tensors, export_checked
from polymodal.models import MultimodalModel

EMBEDDING = "embedding"  # the tower graph's output


class TowerHead(nn.Module):
    """One side of a retrieval head: ``head.embed`` of one input's features, zero where masked
    (as :class:`~polymodal.heads.retrieval.RetrievalHead` gives a missing side)."""

    task = "retrieval_tower"

    def __init__(self, head: nn.Module, name: str) -> None:
        super().__init__()
        self.head, self.name, self.reads = head, name, (name,)

    def forward(self, features: Tensors, masks: Tensors) -> Tensor:
        x = features[self.name]
        out: Tensor = self.head.embed(self.name, x)  # type: ignore[operator]
        return out * masks[self.name].to(out.dtype).unsqueeze(-1)


def tower_model(model: MultimodalModel, head: nn.Module, name: str) -> MultimodalModel:
    """Input ``name``'s encoder (shared with ``model``, not copied) and its tower of ``head``."""
    encoder = model.encoders[model.tied.get(name, name)]
    towers: dict[str, nn.Module] = {EMBEDDING: TowerHead(head, name)}
    return MultimodalModel({name: encoder}, nn.Identity(), towers).eval()


def retrieval_heads(model: MultimodalModel) -> dict[str, Any]:
    return {n: h for n, h in model.heads.items() if getattr(h, "task", "") == "retrieval"}


def _safe(name: str) -> str:
    return re.sub(r"[^\w-]", "_", name)


def tower_path(onnx_path: str | Path, output: str, name: str) -> Path:
    """``model.onnx`` -> ``model.<output>.<input>.onnx`` (in the same folder)."""
    path = Path(onnx_path)
    return path.with_name(f"{path.stem}.{_safe(output)}.{_safe(name)}.onnx")


def export_towers(
    model: MultimodalModel,
    batch: tuple[Tensors, Tensors],
    onnx_path: str | Path,
    sequence_inputs: set[str],
    atol: float = 1e-4,
) -> dict[str, Any]:
    """Every retrieval tower as its own parity-checked graph beside ``onnx_path``; their parity
    reports by ``<output>.<input>`` ({} for a model without a retrieval output). Raises
    :class:`~polymodal.export.onnx.ParityError` like the whole model's export."""
    features, masks = batch
    reports: dict[str, Any] = {}
    for output, head in retrieval_heads(model).items():
        for name in head.pair:
            part = ({name: features[name]}, {name: masks[name]})
            path = tower_path(onnx_path, output, name)
            tower = tower_model(model, head, name)
            reports[f"{output}.{name}"] = export_checked(
                tower, part, path, sequence_inputs & {name}, atol
            )
    model.eval()
    return reports


@functools.lru_cache(maxsize=8)
def _session(path: str, mtime_ns: int) -> OnnxModel:
    """One ONNX Runtime session per tower file (a rewritten file has another mtime)."""
    return OnnxModel(path)


def load_tower(onnx_path: str | Path, output: str, name: str) -> OnnxModel:
    """The ONNX tower of input ``name`` in retrieval output ``output`` beside ``onnx_path``."""
    path = tower_path(onnx_path, output, name)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: the ONNX backend embeds {name!r} queries with the retrieval "
            f"tower that `polymodal export {path.parent} --format onnx` writes beside "
            f"{Path(onnx_path).name}; run it (again)"
        )
    return _session(str(path), path.stat().st_mtime_ns)
