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

    Checked: every Q/DQ has an int8 zero-point that is 0 and positive scales; weights are
    quantized per output channel; Conv/Gemm/weighted-MatMul take both inputs from a
    DequantizeLinear; nothing quantized feeds LayerNorm, Softmax or their decompositions.
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    constants = _constant_arrays(model)
    producers = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    problems: list[str] = []
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not qdq:
        return ["no QuantizeLinear/DequantizeLinear nodes: not an explicitly quantized model"]
    for node in qdq:
        if len(node.input) < 3 or node.input[2] not in constants:
            problems.append(f"{node.name}: no constant zero-point (the default is uint8)")
            continue
        zero_point = constants[node.input[2]]
        if zero_point.dtype != np.int8:
            problems.append(f"{node.name}: zero-point is {zero_point.dtype}, TensorRT needs int8")
        if np.any(zero_point != 0):
            problems.append(f"{node.name}: zero-point is not 0 (asymmetric)")
        scale = constants.get(node.input[1])
        if scale is None or np.any(scale <= 0):
            problems.append(f"{node.name}: scale is not a positive constant")
    for node in model.graph.node:
        if node.op_type in FLOAT_ONLY_OPS:
            for name in node.input:
                source = producers.get(name)
                if source is not None and source.op_type == "DequantizeLinear":
                    problems.append(f"{node.name} ({node.op_type}) takes a quantized input: keep it in float")
    weighted, _ = _weighted_nodes(model)
    for node in model.graph.node:
        if node.name not in weighted:
            continue
        inputs = node.input[:2]
        for position, name in enumerate(inputs):
            source = _through_shape_ops(producers.get(name), producers)
            if source is None or source.op_type != "DequantizeLinear":
                what = "activation" if position == 0 else "weight"
                problems.append(f"{node.name} ({node.op_type}): its {what} input is not quantized")
                continue
            if _is_weight(source, producers, constants):
                scale = constants.get(source.input[1])
                if scale is None or scale.size < 2:
                    problems.append(f"{node.name} ({node.op_type}): weights are quantized per tensor, not per channel")
    return problems


SHAPE_OPS = ("Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze")


def _through_shape_ops(node: onnx.NodeProto | None, producers) -> onnx.NodeProto | None:
    """Skip layout-only ops (TensorRT moves Q/DQ across them) back to the real producer."""
    while node is not None and node.op_type in SHAPE_OPS:
        node = producers.get(node.input[0])
    return node


def _is_weight(dequantize: onnx.NodeProto, producers, constants) -> bool:
    """Whether a DequantizeLinear carries a constant (directly, or through a QuantizeLinear)."""
    source = dequantize.input[0]
    if source in constants:
        return True
    quantize = producers.get(source)
    return quantize is not None and quantize.op_type == "QuantizeLinear" and quantize.input[0] in constants
