"""Attributions of one row's prediction to the values of one of its inputs (captum), with the
other inputs' embeddings held fixed: the shared machinery of :mod:`polymodal.evaluation.explain`
and :mod:`polymodal.evaluation.series_explain`. A row cut into windows (a long series) is
explained through all of its windows at once: its score is the mean of theirs."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from polymodal.models import MultimodalModel
from polymodal.utils.errors import PolymodalError


class ExplainError(PolymodalError, ValueError):
    """An explanation that does not apply to this model, input or table; the message says why."""


def embedding_layers(encoder: nn.Module, name: str) -> list[nn.Embedding]:
    """The embedding table(s) an id encoder looks its input up in."""
    own = getattr(encoder, "embedding", None)
    if isinstance(own, nn.Embedding):
        return [own]
    tables = getattr(encoder, "tables", None)
    if isinstance(tables, nn.ModuleList) and all(isinstance(t, nn.Embedding) for t in tables):
        return list(tables)  # type: ignore[arg-type]
    hf = getattr(encoder, "model", None)
    getter = getattr(hf, "get_input_embeddings", None)
    layer = getter() if callable(getter) else None
    if isinstance(layer, nn.Embedding):
        return [layer]
    raise ExplainError(
        f"input {name!r}: attributions for token / category ids are taken at the encoder's "
        f"embedding layer, but {type(encoder).__name__} has none (expected an nn.Embedding as "
        "`embedding`, an nn.ModuleList of them as `tables`, or a Hugging Face model with "
        "get_input_embeddings()); use method 'occlusion' or modality importance instead"
    )


@contextlib.contextmanager
def gradients_through(encoder: nn.Module) -> Iterator[None]:
    """Frozen pretrained encoders run under ``no_grad``; let gradients reach their inputs."""
    frozen = getattr(encoder, "frozen", None)
    if frozen:
        encoder.frozen = False  # type: ignore[assignment]
    try:
        with torch.enable_grad():
            yield
    finally:
        if frozen:
            encoder.frozen = frozen  # type: ignore[assignment]


def class_scores(logits: Tensor, task: str) -> Tensor:
    """(n, C) scores whose column ``c`` is the logit of class / label ``c`` (binary: -z, z)."""
    if task == "binary":
        return torch.cat([-logits[:, :1], logits[:, :1]], dim=1)
    return logits.reshape(len(logits), -1)


@dataclass
class Row:
    """One row's fixed context: every input's embedding and presence per window of the row
    (k windows when an input is windowed, else k = 1), the output explained."""

    model: MultimodalModel
    embeddings: dict[str, Tensor]  # (k, D) each
    masks: dict[str, Tensor]  # (k,) each
    output: str
    task: str

    @property
    def windows(self) -> int:
        return len(next(iter(self.masks.values())))

    def logits(self, name: str, z: Tensor, per_window: bool = False) -> Tensor:
        """The output's logits per window, (n * k, ...), with input ``name``'s embedding
        replaced by ``z``: (n, D), one per copy of the row (repeated over its windows), or
        (n * k, D), one per window of each copy (``per_window``)."""
        k = self.windows
        z = z if per_window else z.repeat_interleave(k, 0)
        n = z.shape[0] // k
        emb = {
            key: z if key == name else v.repeat(n, *[1] * (v.dim() - 1))
            for key, v in self.embeddings.items()
        }
        masks = {key: v.repeat(n) for key, v in self.masks.items()}
        return self.model.fuse(emb, masks)[self.output]

    def scores(self, name: str, z: Tensor, per_window: bool = False) -> Tensor:
        """Class scores (n, C) with input ``name``'s embedding replaced by ``z`` (see
        :meth:`logits`): a windowed row's are the mean of its windows'."""
        scores = class_scores(self.logits(name, z, per_window), self.task)
        return scores.reshape(-1, self.windows, scores.shape[-1]).mean(1)


def attribute(
    fn: Callable[..., Tensor],
    inputs: tuple[Tensor, ...],
    baselines: tuple[Tensor, ...],
    target: int,
    method: str,
    steps: int,
) -> tuple[tuple[Tensor, ...], float | None]:
    from captum.attr import InputXGradient, IntegratedGradients

    if method == "gradient_x_input":
        leaves = tuple(t.detach().clone().requires_grad_() for t in inputs)
        attrs = InputXGradient(fn).attribute(leaves, target=target)
        return tuple(a.detach() for a in attrs), None
    attrs, delta = IntegratedGradients(fn).attribute(
        inputs, baselines=baselines, target=target, n_steps=steps, return_convergence_delta=True
    )
    return tuple(a.detach() for a in attrs), float(delta.abs().max())


def _id_attributions(
    row: Row, name: str, encoder: nn.Module, x: Tensor, target: int, method: str, steps: int
) -> tuple[list[Tensor], float | None]:
    """Attributions at the embedding layer(s): their outputs are replaced by the values captum
    varies, while the ids still set the padding mask and positions."""
    layers = embedding_layers(encoder, name)
    seen: dict[int, tuple[Tensor, Tensor]] = {}  # per layer: the ids it saw, its output

    def capture(module: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
        seen[id(module)] = (args[0], out.detach())

    handles = [layer.register_forward_hook(capture) for layer in layers]
    try:
        encoder(x)
    finally:
        for h in handles:
            h.remove()
    pad = int(getattr(encoder, "pad_id", 0))  # categorical: 0 = missing
    real = tuple(seen[id(layer)][1] for layer in layers)
    base = tuple(layer(torch.full_like(seen[id(layer)][0], pad)).detach() for layer in layers)

    def forward(*values: Tensor) -> Tensor:
        n = values[0].shape[0]
        hooks = [
            layer.register_forward_hook(lambda m, a, o, v=value: v)
            for layer, value in zip(layers, values, strict=True)
        ]
        try:
            return row.scores(name, encoder(x.expand(n, *x.shape[1:])))
        finally:
            for h in hooks:
                h.remove()

    attrs, delta = attribute(forward, real, base, target, method, steps)
    return [a[0].sum(-1) for a in attrs], delta  # per token / per column


def attribute_input(
    row: Row, name: str, x: Tensor, target: int, method: str, steps: int = 32
) -> tuple[list[Tensor], float | None]:
    """Attributions of input ``name`` (its batch-of-one tensor ``x``) to class ``target``:
    float inputs -> one tensor shaped like a row of ``x``; ids -> one tensor per embedding
    layer, one value per token / column. Also the integrated-gradients convergence delta."""
    model = row.model
    encoder = model.encoders[model.tied.get(name, name)]
    with gradients_through(encoder):
        if not x.is_floating_point():
            return _id_attributions(row, name, encoder, x, target, method, steps)

        def forward(values: Tensor) -> Tensor:
            return row.scores(name, encoder(values))

        attrs, delta = attribute(forward, (x,), (torch.zeros_like(x),), target, method, steps)
    return [attrs[0][0].detach()], delta


__all__ = [
    "ExplainError",
    "Row",
    "attribute",
    "attribute_input",
    "class_scores",
    "embedding_layers",
    "gradients_through",
]
