"""Dynamic int8 quantisation: weights of Linear (and GRU) layers stored as int8, activations
quantised on the fly per batch, so no calibration data is needed.

PyTorch: ``torch.ao`` dynamic quantisation, applied when the artifact is loaded (it is a
deterministic function of the fp32 weights), so the saved weights stay plain safetensors and
nothing pickled is ever read. ONNX Runtime: ``quantize_dynamic`` of the exported graph, whose
int8 file is the small one on disk.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

INT8 = "dynamic_int8"


def quantize_torch(model: nn.Module) -> nn.Module:
    """A copy-free in-place swap of Linear/GRU layers for their dynamic int8 versions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice (still shipped in 2.13)
        return torch.ao.quantization.quantize_dynamic(
            model, {nn.Linear, nn.GRU}, dtype=torch.qint8, inplace=True
        )


def quantize_onnx(src: str | Path, dst: str | Path) -> Path:
    """int8 weights for MatMul/Gemm/Attention nodes of an fp32 ONNX graph."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    return Path(dst)
