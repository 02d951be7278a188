"""Pruning: global magnitude (unstructured) and structured (whole channels / hidden units).

- ``magnitude``: the smallest weights of every trainable Linear/Conv layer, ranked together
  (global L1), are zeroed. Masks are kept during an optional fine-tune, then made permanent: the
  saved weights hold the zeros. Shapes do not change, so latency does not either (the gain is in
  compressibility and in sparse kernels elsewhere).
- ``structured``: inside a chain of layers (an ``nn.Sequential`` or a module with ``chain()``, e.g.
  ``ConvBlock``), a Linear/Conv whose output reaches the next Linear/Conv only through
  per-channel modules (activations, dropout, pooling, BatchNorm) loses its least important output
  units, and the next layer loses the matching inputs. The layers really shrink, so the model is
  smaller and faster; ``fit_shapes`` rebuilds those shapes from the saved weights at load time.

Frozen layers (a frozen pretrained encoder) are left whole: their features are reused as is.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
PASS_THROUGH = (
    nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.LeakyReLU, nn.Dropout, nn.Identity,
    nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, *NORMS,
)  # fmt: skip
METHODS = ("magnitude", "structured")


def _t(module: nn.Module, key: str = "weight") -> torch.Tensor:
    """A layer's parameter or buffer as a tensor (typed: ``nn.Module.__getattr__`` is not)."""
    value = getattr(module, key)
    assert isinstance(value, torch.Tensor), f"{type(module).__name__}.{key} is not a tensor"
    return value


def trainable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, PRUNABLE) and _t(m).requires_grad
    ]


def magnitude(model: nn.Module, amount: float) -> int:
    """Zero the ``amount`` fraction of smallest-magnitude weights over all trainable layers at
    once (masks stay attached until :func:`make_permanent`). Returns the weights zeroed."""
    _check_amount(amount)
    params = [(m, "weight") for _, m in trainable_layers(model)]
    if not params:
        raise ValueError("nothing to prune: the model has no trainable Linear/Conv layer")
    torch_prune.global_unstructured(params, torch_prune.L1Unstructured, amount=amount)
    return sum(int((_t(m, "weight_mask") == 0).sum()) for m, _ in params)


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold pruning masks into the weights (``weight = weight_orig * mask``) and drop the hooks."""
    for m in model.modules():
        if torch_prune.is_pruned(m) and hasattr(m, "weight_mask"):
            torch_prune.remove(m, "weight")
    return model


def chains(module: nn.Module) -> Iterator[list[nn.Module]]:
    """Every chain in ``module``, flattened to its members in call order (a member that is
    not itself a chain, e.g. an encoder inside an ``nn.Sequential``, is searched in turn)."""
    if not (isinstance(module, nn.Sequential) or hasattr(module, "chain")):
        for child in module.children():
            yield from chains(child)
        return
    members = _flatten(module)
    yield members
    for member in members:
        yield from chains(member)


def _flatten(module: nn.Module) -> list[nn.Module]:
    if isinstance(module, nn.Sequential):
        return [leaf for child in module for leaf in _flatten(child)]
    if hasattr(module, "chain"):
        return [leaf for child in module.chain() for leaf in _flatten(child)]  # type: ignore[operator]
    return [module]


def structured(model: nn.Module, amount: float) -> list[dict[str, int]]:
    """Remove the ``amount`` fraction of output units of every prunable producer layer (and the
    matching inputs of its consumer). Returns one ``{"before", "after"}`` per pruned layer."""
    _check_amount(amount)
    done = []
    for chain in chains(model):
        for i, producer in enumerate(chain):
            pair = _consumer(chain, i)
            if pair is None:
                continue
            norms, consumer = pair
            width = int(_t(producer).shape[0])
            keep_n = max(1, round(width * (1 - amount)))
            if keep_n == width:
                continue
            scores = _importance(producer, norms, consumer)
            keep = scores.topk(keep_n).indices.sort().values
            _shrink(producer, norms, consumer, keep)
            done.append({"before": width, "after": keep_n})
    if not done:
        raise ValueError(
            "nothing to prune structurally: no trainable Linear/Conv layer feeds another one "
            "through activations, pooling or BatchNorm only"
        )
    return done


def _consumer(chain: list[nn.Module], i: int) -> tuple[list[nn.Module], nn.Module] | None:
    """(the BatchNorms between, the consumer) when ``chain[i]`` may lose output units."""
    producer = chain[i]
    if not isinstance(producer, PRUNABLE) or not _plain(producer):
        return None
    between: list[nn.Module] = []
    j = i + 1
    while j < len(chain) and isinstance(chain[j], PASS_THROUGH):
        between.append(chain[j])
        j += 1
    if j == len(chain) or not isinstance(chain[j], PRUNABLE) or not _plain(chain[j]):
        return None
    consumer = chain[j]
    if _t(consumer).shape[1] != _t(producer).shape[0]:
        return None  # a reshape in between (not a per-channel path)
    return [m for m in between if isinstance(m, NORMS)], consumer


def _plain(layer: nn.Module) -> bool:
    return bool(_t(layer).requires_grad) and getattr(layer, "groups", 1) == 1


@torch.no_grad()
def _importance(producer: nn.Module, norms: list[nn.Module], consumer: nn.Module) -> torch.Tensor:
    """Per output unit: BatchNorm's |gamma / sigma| when one follows (network slimming: the
    filter's own scale is normalised away), else the L2 norms of its outgoing and incoming
    weights multiplied."""
    if norms:
        bn = norms[-1]
        return (
            _t(bn).abs() / (_t(bn, "running_var") + float(getattr(bn, "eps", 1e-5))).sqrt()
        ).float()
    out_norm = _t(producer).flatten(1).norm(dim=1)
    in_norm = _t(consumer).transpose(0, 1).flatten(1).norm(dim=1)
    return out_norm * in_norm


@torch.no_grad()
def _shrink(
    producer: nn.Module, norms: list[nn.Module], consumer: nn.Module, keep: torch.Tensor
) -> None:
    _set(producer, "weight", _t(producer)[keep])
    if producer.bias is not None:
        _set(producer, "bias", _t(producer, "bias")[keep])
    for bn in norms:
        for key in ("weight", "bias", "running_mean", "running_var"):
            if getattr(bn, key, None) is not None:
                _set(bn, key, _t(bn, key)[keep])
    _set(consumer, "weight", _t(consumer)[:, keep])
    _sync_sizes(producer)
    _sync_sizes(consumer)
    for bn in norms:
        _sync_sizes(bn)


def _set(module: nn.Module, key: str, value: torch.Tensor) -> None:
    old = getattr(module, key)
    if isinstance(old, nn.Parameter):
        setattr(module, key, nn.Parameter(value.clone(), requires_grad=old.requires_grad))
    else:
        module.register_buffer(key, value.clone())


def _sync_sizes(module: nn.Module) -> None:
    """Keep a layer's size attributes (``out_features``, ``in_channels``, ``num_features``) true
    to its weights: ONNX export, ``repr`` and re-building read them."""
    w = _t(module)
    if isinstance(module, nn.Linear):
        module.out_features, module.in_features = int(w.shape[0]), int(w.shape[1])
    elif isinstance(module, (nn.Conv1d, nn.Conv2d)):
        module.out_channels, module.in_channels = int(w.shape[0]), int(w.shape[1])
    elif isinstance(module, NORMS):
        module.num_features = int(w.shape[0])


def fit_shapes(model: nn.Module, state: dict[str, torch.Tensor]) -> int:
    """Give every Linear/Conv/BatchNorm of a freshly built ``model`` the shapes its saved weights
    have (a structurally pruned model), before ``load_state_dict``. Returns the layers resized."""
    resized = 0
    for name, module in model.named_modules():
        if not isinstance(module, (*PRUNABLE, *NORMS)) or module.weight is None:
            continue
        prefix = f"{name}." if name else ""
        saved = state.get(prefix + "weight")
        if saved is None or saved.shape == _t(module).shape:
            continue
        for key, param in module.named_parameters(recurse=False):
            _set(module, key, param.new_empty(state[prefix + key].shape))
        for key, buf in module.named_buffers(recurse=False):
            if buf.dim() > 0 and prefix + key in state:
                _set(module, key, buf.new_empty(state[prefix + key].shape))
        _sync_sizes(module)
        resized += 1
    return resized


def sparsity(model: nn.Module) -> float:
    """Fraction of zero weights over the trainable Linear/Conv layers."""
    layers = trainable_layers(model)
    total = sum(_t(m).numel() for _, m in layers)
    zeros = sum(int((_t(m) == 0).sum()) for _, m in layers)
    return zeros / max(total, 1)


def _check_amount(amount: float) -> None:
    if not 0.0 < amount < 1.0:
        raise ValueError(f"pruning amount must be a fraction in (0, 1), got {amount}")
