"""Fill the neighbour index of retrieval-augmented heads (a caption head with ``retrieve: k``)
with the training rows, before the first epoch: each such head names the input whose features
are its keys (``index_input``), and gets those features and its own encoded targets. A retrieval
head with ``anchors: k`` names both its inputs (``anchor_inputs``) and gets their features of
the training pairs.

The keys must come from a frozen encoder: they are computed once, stay valid for the whole
training and after it, and let a training item recognise itself (leave-one-out) by its features.
With a feature cache attached (frozen encoders, ``trainer.feature_cache``) they cost no extra
encoder pass: the first epoch reads the same cache.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.data.dataset import TableDataset
from polymodal.encoders.cache import is_frozen, warm_model

log = logging.getLogger("polymodal.train")


def index_heads(model: nn.Module) -> dict[str, nn.Module]:
    """Heads that retrieve from a neighbour index, by output name."""
    heads: Any = getattr(model, "heads", {})
    return {n: h for n, h in heads.items() if getattr(h, "index_input", None)}


def anchor_heads(model: nn.Module) -> dict[str, nn.Module]:
    """Retrieval heads with an anchor space, by output name."""
    heads: Any = getattr(model, "heads", {})
    return {n: h for n, h in heads.items() if getattr(h, "anchor_inputs", ())}


def fill_neighbour_indexes(
    model: nn.Module, data: Any, device: torch.device | str, batch_size: int = 256
) -> dict[str, int]:
    """Fill every index head of ``model`` from the training ``data``; returns items per head."""
    heads, anchored = index_heads(model), anchor_heads(model)
    if not heads and not anchored:
        return {}
    if not isinstance(data, TableDataset) or data.row_of is not None:
        option = "retrieve" if heads else "anchors"
        raise ValueError(
            f"outputs {sorted(heads | anchored)}: {option} needs an in-memory training table of "
            "one item per row (not a streamed table, nor windowed inputs)"
        )
    sizes = fill_anchors(model, anchored, data, device, batch_size)
    for name, head in heads.items():
        inp = str(head.index_input)
        keys = input_features(model, data, inp, device, batch_size)
        present = data.inputs[inp].present.bool()
        head.fill_index(keys[present], data.targets[name][present])  # type: ignore[operator]
        sizes[name] = int(present.sum())
        log.info("neighbour index of %s: %d training items (%s features)", name, sizes[name], inp)
    return sizes


def fill_anchors(
    model: nn.Module,
    heads: dict[str, nn.Module],
    data: TableDataset,
    device: torch.device | str,
    batch_size: int,
) -> dict[str, int]:
    """The anchor keys of each retrieval head: its two inputs' features of the training rows
    where both are present."""
    sizes = {}
    for name, head in heads.items():
        names = [str(n) for n in head.anchor_inputs]  # type: ignore[union-attr]
        feats = {n: input_features(model, data, n, device, batch_size, "anchors") for n in names}
        present = data.inputs[names[0]].present.bool() & data.inputs[names[1]].present.bool()
        head.fill_anchors({n: f[present] for n, f in feats.items()})  # type: ignore[operator]
        sizes[name] = int(present.sum())
        log.info("anchor space of %s: %d training pairs", name, sizes[name])
    return sizes


@torch.no_grad()
def input_features(
    model: nn.Module,
    data: TableDataset,
    name: str,
    device: torch.device | str,
    batch_size: int,
    option: str = "retrieve",
) -> Tensor:
    """(N, D) frozen encoder features of input ``name`` for every row of ``data`` (on CPU),
    through the model's feature cache when one is attached."""
    tied: dict[str, str] = getattr(model, "tied", {})
    encoder: nn.Module = model.encoders[tied.get(name, name)]  # type: ignore[index,assignment]
    if not is_frozen(encoder):
        raise ValueError(
            f"{option}: the neighbours are found by input {name!r}'s features, so its encoder "
            f"({type(encoder).__name__}) must be frozen (features that stay fixed while "
            f"training); use a frozen pretrained encoder for it, or set {option}: 0"
        )
    values = data.inputs[name].values
    warm_model(model, {name: values}, batch_size)  # a sorted pass with a progress bar, if cached
    cache = getattr(model, "feature_caches", {}).get(name)
    was = encoder.training
    encoder.eval()
    chunks = []
    for start in range(0, len(values), batch_size):
        x = values[start : start + batch_size].to(device)
        chunks.append((cache(encoder, x) if cache is not None else encoder(x)).float().cpu())
    encoder.train(was)
    feats = torch.cat(chunks)
    index = data.inputs[name].index
    return feats[index] if index is not None else feats


__all__ = [
    "anchor_heads",
    "fill_anchors",
    "fill_neighbour_indexes",
    "index_heads",
    "input_features",
]
