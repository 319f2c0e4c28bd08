"""TensorRT-ready INT8 ONNX: explicit quantization with QuantizeLinear/DequantizeLinear.

TensorRT builds INT8 engines from Q/DQ ONNX ("explicit quantization": the only INT8 path
left in TensorRT 11, and supported from 8.6 on) and accepts only *signed* INT8 with
zero-point 0, weights per output channel. ``quantize_for_tensorrt`` makes such a model from
a float ONNX with ONNX Runtime's static quantizer; ``tensorrt_qdq_violations`` reads any
Q/DQ graph and lists where it breaks those rules.

What is quantized: Conv, Gemm and MatMul with a constant weight (convolutions and linear
layers) - both their activation input and their weight. LayerNorm, Softmax, GELU and the
attention's activation-by-activation MatMuls stay in floating point: vision transformers
lose accuracy when those are INT8, and they are a small part of the compute.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx

__all__ = ["quantize_for_tensorrt", "tensorrt_qdq_violations", "QUANTIZED_OPS", "FLOAT_ONLY_OPS"]

QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")
FLOAT_ONLY_OPS = ("LayerNormalization", "Softmax", "ReduceMean", "Pow", "Sqrt", "Div", "Erf", "Gelu")


def _weighted_nodes(model: onnx.ModelProto) -> tuple[list[str], list[str]]:
    """(nodes to quantize, activation-by-activation MatMuls to leave in float)."""
    constants = {i.name for i in model.graph.initializer}
    constants |= {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    quantize, skip = [], []
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm"):
            quantize.append(node.name)
        elif node.op_type == "MatMul":
            (quantize if any(i in constants for i in node.input) else skip).append(node.name)
    return quantize, skip


def quantize_for_tensorrt(
    float_onnx: str | os.PathLike,
    out: str | os.PathLike,
    calibration: Iterable[dict[str, np.ndarray]],
    *,
    method: str = "percentile",
) -> Path:
    """Write a symmetric, signed INT8 Q/DQ ONNX of ``float_onnx`` (not atomic: give a temp path).

    Args:
        float_onnx: the FP32 model.
        out: where to write the Q/DQ model.
        calibration: feeds ({input name: array}) to collect activation ranges on.
        method: "percentile" (99.999th, robust to outliers; the default), "minmax" or "entropy".
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    methods = {
        "percentile": CalibrationMethod.Percentile,
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
    }
    if method not in methods:
        raise ValueError(f"calibration method must be one of {sorted(methods)}, got {method!r}")
    quantize, skip = _weighted_nodes(onnx.load(str(float_onnx), load_external_data=False))
    feeds = list(calibration)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(feeds)

        def get_next(self):
            return next(self.items, None)

    quantize_static(
        str(float_onnx),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,  # TensorRT: signed INT8 only
        weight_type=QuantType.QInt8,
        op_types_to_quantize=list(QUANTIZED_OPS),
        nodes_to_quantize=quantize,
        nodes_to_exclude=skip,
        calibrate_method=methods[method],
        # zero-point 0; biases stay float (TensorRT has no int32 DequantizeLinear)
        # Q/DQ on inputs only: TensorRT fuses an output Q into the next layer's input, and an
        # output DQ would feed GELU/Softmax a quantized tensor.
        extra_options={
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            "QuantizeBias": False,
            "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS),
        },
    )
    return Path(out)


def _constant_arrays(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    arrays = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    arrays[node.output[0]] = onnx.numpy_helper.to_array(attribute.t)
    return arrays


def tensorrt_qdq_violations(model: onnx.ModelProto | str | os.PathLike) -> list[str]:
    """Where a Q/DQ model breaks TensorRT's explicit-quantization rules (empty: none).

    Checked: every QuantizeLinear/DequantizeLinear is INT8 with zero-point 0 and positive
    constant scales (an absent zero-point is 0 and typed like the DequantizeLinear's input; a
    QuantizeLinear without one quantizes to uint8 unless ``output_dtype`` says otherwise);
    Conv, Gemm and every MatMul with a weight (a constant, directly or through Q/DQ and layout
    ops) take both inputs from a DequantizeLinear; weights are quantized per output channel,
    along the output-channel axis (Conv: 0; Gemm: 0 with transB, else 1; MatMul: the weight's
    last axis); nothing quantized feeds LayerNorm, Softmax or their decompositions.
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    constants = _constant_arrays(model)
    producers = {out: node for node in model.graph.node for out in node.output}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not qdq:
        return ["no QuantizeLinear/DequantizeLinear nodes: not an explicitly quantized model"]
    declared = _declared_types(model)
    problems: list[str] = []
    for node in qdq:
        problems += _qdq_node_problems(node, constants, producers, declared)
    for node in model.graph.node:
        if node.op_type in FLOAT_ONLY_OPS:
            for name in node.input:
                source = producers.get(name)
                if source is not None and source.op_type == "DequantizeLinear":
                    problems.append(f"{node.name} ({node.op_type}) takes a quantized input: keep it in float")
    for node in model.graph.node:
        if node.op_type in QUANTIZED_OPS:
            problems += _weighted_node_problems(node, constants, producers)
    return problems


def _declared_types(model: onnx.ModelProto) -> dict[str, int]:
    """Tensor name -> ONNX element type, for graph inputs and annotated intermediate tensors."""
    infos = [*model.graph.input, *model.graph.value_info, *model.graph.output]
    return {info.name: info.type.tensor_type.elem_type for info in infos if info.type.HasField("tensor_type")}


def _qdq_node_problems(node: onnx.NodeProto, constants, producers, declared: dict[str, int]) -> list[str]:
    problems = []
    zero_point_name = node.input[2] if len(node.input) > 2 else ""
    if zero_point_name and zero_point_name not in constants:
        problems.append(f"{node.name}: its zero-point is not a constant")
    elif zero_point_name and np.any(constants[zero_point_name] != 0):
        problems.append(f"{node.name}: zero-point is not 0 (asymmetric)")
    integer_type = _integer_type(node, constants, producers, declared)
    if integer_type is None:
        problems.append(f"{node.name}: its integer type cannot be told (no zero-point, input not a typed constant)")
    elif integer_type != np.int8:
        default = "" if zero_point_name else " (no zero-point: the default)"
        problems.append(f"{node.name}: quantizes to {integer_type}{default}, TensorRT needs int8")
    scale = constants.get(node.input[1])
    if scale is None or np.any(scale <= 0):
        problems.append(f"{node.name}: scale is not a positive constant")
    return problems


def _integer_type(node: onnx.NodeProto, constants, producers, declared: dict[str, int]) -> np.dtype | None:
    """The integer type a QuantizeLinear makes or a DequantizeLinear reads (None: unknown)."""
    if len(node.input) > 2 and node.input[2]:
        zero_point = constants.get(node.input[2])
        return None if zero_point is None else zero_point.dtype
    if node.op_type == "QuantizeLinear":
        # without a zero-point ONNX quantizes to uint8, unless opset 21's output_dtype says otherwise
        output_dtype = next((a.i for a in node.attribute if a.name == "output_dtype"), 0)
        return np.dtype(np.uint8) if not output_dtype else onnx.helper.tensor_dtype_to_np_dtype(output_dtype)
    source = node.input[0]  # DequantizeLinear without zero-point: its input's type
    if source in constants:
        return constants[source].dtype
    quantize = producers.get(source)
    if quantize is not None and quantize.op_type == "QuantizeLinear":
        return _integer_type(quantize, constants, producers, declared)
    if declared.get(source):
        return onnx.helper.tensor_dtype_to_np_dtype(declared[source])
    return None


def _weighted_node_problems(node: onnx.NodeProto, constants, producers) -> list[str]:
    """Conv/Gemm/weighted MatMul: both inputs dequantized, weights per output channel on its axis."""
    weights = {i for i, name in enumerate(node.input[:2]) if _constant_source(name, producers, constants)}
    if node.op_type == "MatMul" and not weights:
        return []  # activation by activation (attention): left in float on purpose
    problems = []
    for position, name in enumerate(node.input[:2]):
        what = "weight" if position in weights or (not weights and position == 1) else "activation"
        dequantize = _through_shape_ops(producers.get(name), producers)
        if dequantize is None or dequantize.op_type != "DequantizeLinear":
            problems.append(f"{node.name} ({node.op_type}): its {what} input is not quantized")
        elif position in weights:
            problems += _per_channel_problems(
                node,
                position,
                dequantize,
                direct=dequantize.output[0] == name,
                constants=constants,
                producers=producers,
            )
    return problems


def _per_channel_problems(node, position: int, dequantize, *, direct: bool, constants, producers) -> list[str]:
    scale = constants.get(dequantize.input[1])
    if scale is None or scale.size < 2:
        return [f"{node.name} ({node.op_type}): weights are quantized per tensor, not per channel"]
    shape = _dequantized_weight_shape(dequantize, producers, constants)
    if not direct or shape is None:
        return []  # a layout op in between (TensorRT moves Q/DQ across it): its axis maps elsewhere
    rank = len(shape)
    axis = next((a.i for a in dequantize.attribute if a.name == "axis"), 1) % rank
    expected = _output_channel_axis(node, position, rank)
    if axis != expected or scale.size != shape[expected]:
        return [
            f"{node.name} ({node.op_type}): weight scales run along axis {axis} ({scale.size} of them), not the "
            f"output channels (axis {expected}, {shape[expected]} of them)"
        ]
    return []


def _output_channel_axis(node: onnx.NodeProto, position: int, rank: int) -> int:
    if node.op_type == "Conv":
        return 0  # (out channels, in channels / groups, kernel...)
    if node.op_type == "Gemm":
        transposed = any(a.name == ("transB" if position == 1 else "transA") and a.i for a in node.attribute)
        return (0 if transposed else 1) if position == 1 else (1 if transposed else 0)
    return rank - 1 if position == 1 else rank - 2  # MatMul: B is (..., K, N), A is (..., M, K)


SHAPE_OPS = ("Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze")


def _through_shape_ops(node: onnx.NodeProto | None, producers) -> onnx.NodeProto | None:
    """Skip layout-only ops (TensorRT moves Q/DQ across them) back to the real producer."""
    while node is not None and node.op_type in SHAPE_OPS:
        node = producers.get(node.input[0])
    return node


def _constant_source(name: str, producers, constants) -> str | None:
    """The constant a tensor is made from through layout ops and Q/DQ (None: it is computed)."""
    while name not in constants:
        node = producers.get(name)
        if node is None or node.op_type not in (*SHAPE_OPS, "QuantizeLinear", "DequantizeLinear"):
            return None
        name = node.input[0]
    return name


def _dequantized_weight_shape(dequantize: onnx.NodeProto, producers, constants) -> tuple[int, ...] | None:
    """The shape of the constant a DequantizeLinear reads (directly, or through a QuantizeLinear)."""
    source = dequantize.input[0]
    if source in constants:
        return constants[source].shape
    quantize = producers.get(source)
    if quantize is not None and quantize.op_type == "QuantizeLinear" and quantize.input[0] in constants:
        return constants[quantize.input[0]].shape
    return None
