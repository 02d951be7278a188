"""What every encoder promises: ``out_dim``, the input types it accepts, and the preprocessing it
needs.

``forward(x) -> (B, out_dim)`` takes one input's batch tensor (see the model contract); the
``__init__`` signature is the encoder's config schema, and data-derived arguments (``vocab_size``,
``pad_id``, ``in_features``, ``cardinalities``, ``in_channels``, ``image_size``, ``n_mels``,
``sample_rate``, ``series_length``, ``series_reference``, ``modality``) are injected by name by
the model builder.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn


class Encoder(nn.Module):
    """Base class: subclasses set ``modalities`` and ``self.out_dim`` and implement ``forward``."""

    modalities: ClassVar[tuple[str, ...]] = ()
    # gradients of the output reach the input (attributions); False for step-function features
    differentiable: ClassVar[bool] = True
    out_dim: int

    @classmethod
    def input_spec(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Preprocessing options this encoder requires, given the user's encoder ``kwargs``
        (e.g. a pretrained tokenizer); the user's own ``preprocessing:`` block overrides them."""
        return {}
