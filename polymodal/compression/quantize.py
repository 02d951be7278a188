"""Dynamic int8 quantisation: weights of Linear (and GRU) layers stored as int8, activations
quantised on the fly per batch, so no calibration data is needed.

PyTorch: ``torch.ao`` dynamic quantisation, applied when the artifact is loaded (it is a
deterministic function of the fp32 weights), so the saved weights stay plain safetensors and
nothing pickled is ever read. ONNX Runtime: ``quantize_dynamic`` of the exported graph, whose
int8 file is the small one on disk.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

INT8 = "dynamic_int8"
# the ONNX forms of the nn.Linear / nn.GRU swapped above, and embedding tables (Gather)
ONNX_OPS = ["MatMul", "Gemm", "GRU", "Gather"]


def quantize_torch(model: nn.Module) -> nn.Module:
    """A copy-free in-place swap of Linear/GRU layers for their dynamic int8 versions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice (still shipped in 2.13)
        return torch.ao.quantization.quantize_dynamic(
            model, {nn.Linear, nn.GRU}, dtype=torch.qint8, inplace=True
        )


def quantize_onnx(src: str | Path, dst: str | Path) -> Path:
    """int8 weights for the MatMul/Gemm (Linear), GRU and embedding (Gather) nodes of an fp32
    ONNX graph, as in PyTorch; convolutions stay fp32 (ONNX Runtime's dynamic ConvInteger is
    slower than its fp32 convolution). The graph is first optimised at ONNX Runtime's basic level (constant
    folding, standard-op fusions only, so the file stays portable): the tracer leaves each
    Linear weight behind a Transpose, which only an initializer-fed MatMul can quantise."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="polymodal-quant-") as tmp:
        folded = Path(tmp) / "basic.onnx"
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = str(folded)
        ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])
        quantize_dynamic(
            str(folded),
            str(dst),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=ONNX_OPS,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return Path(dst)
