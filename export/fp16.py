"""FP16 ONNX for TensorRT's strongly typed mode (TensorRT 11 takes precision from the graph).

Weights and activations become float16, except LayerNorm/Softmax and the ops of the
channel LayerNorm (means, variance, square root), which stay float32: a transformer's
normalisation statistics overflow or lose precision in float16. So do the ops that
``onnxconverter-common`` blocks by default (Resize, Range, TopK, NonMaxSuppression, ...):
ONNX gives several of them no float16 type, so a converted graph would not load. Inputs and
outputs stay float32 so the runtime feeds the same arrays to every precision. Uses
Microsoft's ``onnxconverter-common`` (small, maintained, pure Python).
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx

from edge_fer.errors import ArtifactError, BackendError

__all__ = ["convert_to_fp16", "KEEP_FP32"]

# Kept in float32 on top of onnxconverter-common's DEFAULT_OP_BLOCK_LIST.
KEEP_FP32 = ["LayerNormalization", "Softmax", "ReduceMean", "Pow", "Sqrt", "Div", "Erf"]


def convert_to_fp16(float_onnx: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the float16 version of ``float_onnx`` to ``out`` (give a temp path; not atomic)."""
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise BackendError("FP16 ONNX needs onnxconverter-common: pip install onnxconverter-common") from None
    model = onnx.load(str(float_onnx))
    # op_block_list replaces the converter's default list: extend it, or Resize/Range/TopK... turn float16
    block_list = [*float16.DEFAULT_OP_BLOCK_LIST, *KEEP_FP32]
    converted = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=block_list)
    _float32_outputs(converted, [o.name for o in model.graph.output if _is_float32(o)])
    onnx.save(converted, str(out))
    return Path(out)


def _is_float32(value_info: onnx.ValueInfoProto) -> bool:
    return value_info.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def _float32_outputs(model: onnx.ModelProto, names: list[str]) -> None:
    """Make float32 again the outputs that came out float16.

    onnxconverter-common 1.16 ignores keep_io_types for an output made by a blocked op (a
    final Softmax, say): it casts the float32 result to float16.
    """
    producers = {name: node for node in model.graph.node for name in node.output}
    for output in model.graph.output:
        if output.name not in names or _is_float32(output):
            continue
        producer = producers.get(output.name)
        if producer is None or producer.op_type != "Cast":
            raise ArtifactError(f"FP16 conversion left output {output.name!r} float16 (not through a Cast)")
        for attribute in producer.attribute:  # the converter's own cast to float16: retarget it
            if attribute.name == "to":
                attribute.i = onnx.TensorProto.FLOAT
        output.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
