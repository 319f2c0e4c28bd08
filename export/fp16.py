"""FP16 ONNX for TensorRT's strongly typed mode (TensorRT 11 takes precision from the graph).

Weights and activations become float16, except LayerNorm/Softmax and the ops of the
channel LayerNorm (means, variance, square root), which stay float32: a transformer's
normalisation statistics overflow or lose precision in float16. Inputs and outputs stay
float32 so the runtime feeds the same arrays to every precision. Uses Microsoft's
``onnxconverter-common`` (small, maintained, pure Python).
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx

from edge_fer.errors import BackendError

__all__ = ["convert_to_fp16", "KEEP_FP32"]

KEEP_FP32 = ["LayerNormalization", "Softmax", "ReduceMean", "Pow", "Sqrt", "Div", "Erf"]


def convert_to_fp16(float_onnx: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the float16 version of ``float_onnx`` to ``out`` (give a temp path; not atomic)."""
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise BackendError("FP16 ONNX needs onnxconverter-common: pip install onnxconverter-common") from None
    model = onnx.load(str(float_onnx))
    converted = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=KEEP_FP32)
    onnx.save(converted, str(out))
    return Path(out)
