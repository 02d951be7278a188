"""Build a :class:`MultimodalModel` from a config and the fitted data's specs.

Every component block is ``{type, **kwargs}``; kwargs are checked against the registered class's
``__init__`` (one description per component). Data-derived arguments (``vocab_size``,
``in_dims``, ``num_outputs``...) are injected here, never written by users.
"""

from __future__ import annotations

from typing import Any

from torch import nn

import polymodal.data
import polymodal.encoders
import polymodal.fusion
import polymodal.heads  # noqa: F401  (registers heads)
from polymodal import registry
from polymodal.config import ExperimentConfig, InputConfig
from polymodal.models.multimodal import MultimodalModel

ENCODER_INJECTED = (
    "modality",
    "vocab_size",
    "pad_id",
    "in_features",
    "cardinalities",
    "in_channels",
    "image_size",
    "n_mels",
    "sample_rate",
    "series_length",
    "series_reference",
)
FUSION_INJECTED = ("in_dims",)
HEAD_INJECTED = ("in_dim", "in_dims", "pair", "num_outputs", "loss", "focal_gamma", "class_weights")


def _encoder_class(inp: InputConfig) -> type:
    kwargs = {k: v for k, v in inp.encoder.items() if k != "type"}
    cls = registry.check_kwargs(
        "encoder", inp.encoder["type"], kwargs, ENCODER_INJECTED, where=f"inputs.{inp.name}.encoder"
    )
    accepted = getattr(cls, "modalities", ())
    if inp.type not in accepted:
        ok = [
            n
            for n in registry.names("encoder")
            if inp.type in getattr(registry.get("encoder", n), "modalities", ())
        ]
        raise registry.RegistryError(
            f"inputs.{inp.name}.encoder: {inp.encoder['type']!r} does not encode {inp.type} inputs; "
            f"valid choices: {', '.join(ok)}"
        )
    return cls


def preprocessing_options(inp: InputConfig) -> dict[str, Any]:
    """Preprocessor kwargs for one input: what its encoder requires, overridden by the user's."""
    cls = _encoder_class(inp)
    kwargs = {k: v for k, v in inp.encoder.items() if k != "type"}
    spec = cls.input_spec({**kwargs, "modality": inp.type})  # type: ignore[attr-defined]
    opts = {**spec, **inp.preprocessing}
    registry.check_kwargs("preprocessor", inp.type, opts, where=f"inputs.{inp.name}.preprocessing")
    return opts


# names a ModuleDict cannot hold (its own attributes: forward, type, train, to...): an input or
# output named so failed deep in model building with "attribute 'forward' already exists"
RESERVED = frozenset(dir(nn.ModuleDict()))


def check_names(config: ExperimentConfig) -> None:
    """Input and output names key the model's encoders and heads."""
    named = [("input", i.name) for i in config.inputs] + [
        ("output", o.name) for o in config.outputs
    ]
    for kind, name in named:
        if name in RESERVED or "." in name or not name:
            fix = "rename the column" if kind == "output" else "give the input another name"
            raise ValueError(
                f"{kind} {name!r}: not usable as a name (empty, holds a '.', or is an attribute "
                f"of torch.nn.Module such as forward, type, train); {fix}"
            )


def validate(config: ExperimentConfig) -> None:
    """Check every component name and option before any data is read."""
    check_names(config)
    for inp in config.inputs:
        preprocessing_options(inp)
    fusion = {k: v for k, v in config.fusion.items() if k != "type"}
    registry.check_kwargs("fusion", config.fusion["type"], fusion, FUSION_INJECTED, where="fusion")
    for out in config.outputs:
        registry.check_kwargs(
            "head", out.task, out.head, HEAD_INJECTED, where=f"outputs.{out.name}.head"
        )


def build_model(
    config: ExperimentConfig,
    specs: dict[str, dict[str, Any]],
    num_outputs: dict[str, int],
    class_weights: dict[str, list[float] | None] | None = None,
) -> MultimodalModel:
    """``specs[input]`` comes from the fitted preprocessor's ``spec()``; ``num_outputs[output]``
    from the fitted target encoder."""
    validate(config)
    encoders: dict[str, nn.Module] = {}
    tied = {inp.name: inp.tied for inp in config.inputs if inp.tied is not None}
    for inp in config.inputs:
        if inp.tied is None:
            where = f"inputs.{inp.name}.encoder"
            encoders[inp.name] = registry.build(
                "encoder", inp.encoder, where=where, modality=inp.type, **specs[inp.name]
            )
    in_dims = {
        inp.name: int(encoders[inp.tied or inp.name].out_dim)  # type: ignore[arg-type]
        for inp in sorted(config.inputs, key=lambda i: i.name)
    }
    fusion = registry.build("fusion", config.fusion, where="fusion", in_dims=in_dims)
    heads: dict[str, nn.Module] = {}
    weights = class_weights or {}
    for out in config.outputs:
        heads[out.name] = registry.build(
            "head",
            {"type": out.task, **out.head},
            where=f"outputs.{out.name}.head",
            in_dim=int(fusion.out_dim),
            in_dims=in_dims,  # retrieval towers / a caption's source read one input's features
            pair=out.pair,
            num_outputs=num_outputs[out.name],
            loss=out.loss,
            focal_gamma=out.focal_gamma,
            class_weights=weights.get(out.name),
        )
    return MultimodalModel(encoders, fusion, heads, tied=tied)


def render_defaults(config: ExperimentConfig) -> dict[str, Any]:
    """The config as a dict with every component option filled with its default."""
    data = config.model_dump(mode="json")
    for raw, inp in zip(data["inputs"], config.inputs, strict=True):
        enc = _encoder_class(inp)
        raw["encoder"] = {
            "type": inp.encoder["type"],
            **registry.defaults(enc, ENCODER_INJECTED),
            **raw["encoder"],
        }
        pre = registry.get("preprocessor", inp.type)
        raw["preprocessing"] = {**registry.defaults(pre), **preprocessing_options(inp)}
    fusion_cls = registry.get("fusion", config.fusion["type"])
    data["fusion"] = {
        "type": config.fusion["type"],
        **registry.defaults(fusion_cls, FUSION_INJECTED),
        **data["fusion"],
    }
    for raw, out in zip(data["outputs"], config.outputs, strict=True):
        head_cls = registry.get("head", out.task)
        raw["head"] = {**registry.defaults(head_cls, HEAD_INJECTED), **raw["head"]}
    return data
