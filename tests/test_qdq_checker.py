"""export.qdq.tensorrt_qdq_violations on small hand-made Q/DQ graphs (and one ORT-quantized one)."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.qdq import quantize_for_tensorrt, tensorrt_qdq_violations

RNG = np.random.default_rng(0)


def make_model(nodes, inputs, outputs, initializers, *, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "qdq", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10 if opset >= 21 else 9  # what onnxruntime 1.17+ loads
    onnx.checker.check_model(model, full_check=True)
    return model


def quantized_activation(name: str, *, zero_point_type=np.int8) -> tuple[list, list]:
    """``name`` -> QuantizeLinear -> DequantizeLinear -> ``name + '_dq'`` (per tensor, zero-point 0)."""
    initializers = [
        numpy_helper.from_array(np.array(0.05, np.float32), f"{name}_scale"),
        numpy_helper.from_array(np.array(0, zero_point_type), f"{name}_zero"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", [name, f"{name}_scale", f"{name}_zero"], [f"{name}_q"], name=f"{name}_Q"),
        helper.make_node(
            "DequantizeLinear", [f"{name}_q", f"{name}_scale", f"{name}_zero"], [f"{name}_dq"], name=f"{name}_DQ"
        ),
    ]
    return nodes, initializers


def int8_weight(name: str, shape: tuple[int, ...], *, axis: int | None, with_zero_point: bool = False):
    """A pre-quantized int8 weight and its DequantizeLinear (per channel along ``axis``; None: per tensor)."""
    weight = RNG.integers(-127, 128, size=shape).astype(np.int8)
    scale = np.full(shape[axis] if axis is not None else (), 0.01, np.float32)
    initializers = [numpy_helper.from_array(weight, name), numpy_helper.from_array(scale, f"{name}_scale")]
    inputs = [name, f"{name}_scale"]
    if with_zero_point:
        initializers.append(numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), f"{name}_zero"))
        inputs.append(f"{name}_zero")
    attributes = {} if axis is None else {"axis": axis}
    node = helper.make_node("DequantizeLinear", inputs, [f"{name}_dq"], name=f"{name}_DQ", **attributes)
    return [node], initializers


def matmul_model(*, weight_axis: int | None = 1, quantize_activation: bool = True) -> onnx.ModelProto:
    """x (1, 4) @ W (4, 3): W an int8 constant through a DequantizeLinear without zero-point."""
    nodes, initializers = int8_weight("W", (4, 3), axis=weight_axis)
    activation = "x"
    if quantize_activation:
        more_nodes, more_initializers = quantized_activation("x")
        nodes, initializers, activation = more_nodes + nodes, more_initializers + initializers, "x_dq"
    nodes.append(helper.make_node("MatMul", [activation, "W_dq"], ["y"], name="linear"))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    return make_model(nodes, [x], [y], initializers)


def conv_model(*, weight_axis: int) -> onnx.ModelProto:
    """x (1, 2, 5, 5) -> Conv with W (4, 2, 3, 3), int8 with an explicit zero-point."""
    nodes, initializers = quantized_activation("x")
    weight_nodes, weight_initializers = int8_weight("W", (4, 2, 3, 3), axis=weight_axis, with_zero_point=True)
    nodes += weight_nodes + [helper.make_node("Conv", ["x_dq", "W_dq"], ["y"], name="conv")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 3, 3])
    return make_model(nodes, [x], [y], initializers + weight_initializers)


def gemm_model(*, transposed: bool, weight_axis: int) -> onnx.ModelProto:
    """x (1, 4) -> Gemm with W (3, 4) (transB=1) or (4, 3)."""
    nodes, initializers = quantized_activation("x")
    weight_nodes, weight_initializers = int8_weight("W", (3, 4) if transposed else (4, 3), axis=weight_axis)
    nodes += weight_nodes + [helper.make_node("Gemm", ["x_dq", "W_dq"], ["y"], name="fc", transB=int(transposed))]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    return make_model(nodes, [x], [y], initializers + weight_initializers)


def test_valid_int8_dequantize_without_zero_point_is_not_flagged():
    """ONNX: an absent zero-point is 0, typed like the input - an int8 weight needs none."""
    model = matmul_model()
    assert tensorrt_qdq_violations(model) == []
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": np.ones((1, 4), np.float32)})[0].shape == (1, 3)


@pytest.mark.parametrize(
    "model, expected",
    [
        (lambda: matmul_model(weight_axis=0), "linear (MatMul): weight scales run along axis 0 (4 of them)"),
        (lambda: matmul_model(weight_axis=None), "linear (MatMul): weights are quantized per tensor"),
        (lambda: matmul_model(quantize_activation=False), "linear (MatMul): its activation input is not quantized"),
        (lambda: conv_model(weight_axis=1), "conv (Conv): weight scales run along axis 1 (2 of them)"),
        (lambda: gemm_model(transposed=True, weight_axis=1), "fc (Gemm): weight scales run along axis 1"),
        (lambda: gemm_model(transposed=False, weight_axis=0), "fc (Gemm): weight scales run along axis 0"),
    ],
    ids=["matmul-axis", "matmul-per-tensor", "matmul-float-activation", "conv-axis", "gemm-transB", "gemm"],
)
def test_weights_arriving_through_dequantize_are_checked_per_output_channel(model, expected):
    problems = tensorrt_qdq_violations(model())
    assert len(problems) == 1 and problems[0].startswith(expected), problems


@pytest.mark.parametrize(
    "model",
    [
        lambda: conv_model(weight_axis=0),
        lambda: gemm_model(transposed=True, weight_axis=0),
        lambda: gemm_model(transposed=False, weight_axis=1),
    ],
    ids=["conv", "gemm-transB", "gemm"],
)
def test_output_channel_axes_pass(model):
    assert tensorrt_qdq_violations(model()) == []


def test_quantize_without_zero_point_is_uint8_unless_output_dtype_says_int8():
    def model(output_dtype: int | None) -> onnx.ModelProto:
        attributes = {} if output_dtype is None else {"output_dtype": output_dtype}
        scale = numpy_helper.from_array(np.array(0.05, np.float32), "scale")
        nodes = [
            helper.make_node("QuantizeLinear", ["x", "scale"], ["q"], name="Q", **attributes),
            helper.make_node("DequantizeLinear", ["q", "scale"], ["y"], name="DQ"),
        ]
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
        return make_model(nodes, [x], [y], [scale], opset=21)

    problems = tensorrt_qdq_violations(model(None))
    assert problems == [
        "Q: quantizes to uint8 (no zero-point: the default), TensorRT needs int8",
        "DQ: quantizes to uint8 (no zero-point: the default), TensorRT needs int8",
    ]
    assert tensorrt_qdq_violations(model(TensorProto.INT8)) == []


def test_uint8_and_asymmetric_zero_points_are_flagged():
    nodes, initializers = quantized_activation("x", zero_point_type=np.uint8)
    initializers[1] = numpy_helper.from_array(np.array(128, np.uint8), "x_zero")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("x_dq", TensorProto.FLOAT, [1, 4])
    problems = tensorrt_qdq_violations(make_model(nodes, [x], [y], initializers))
    assert "x_Q: zero-point is not 0 (asymmetric)" in problems
    assert "x_Q: quantizes to uint8, TensorRT needs int8" in problems


def test_ort_quantization_for_tensorrt_passes_with_output_channel_axes(tmp_path):
    """quantize_for_tensorrt's Conv, Gemm (transB) and MatMul weights meet the axis rule; attention stays float."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 3])
    initializers = [
        numpy_helper.from_array(RNG.normal(size=(4, 2, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(RNG.normal(size=(5, 16)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(RNG.normal(size=(5, 3)).astype(np.float32), "proj_w"),
        numpy_helper.from_array(np.array([2, 4, 16], np.int64), "tokens_shape"),
        numpy_helper.from_array(np.array([8, 16], np.int64), "flat_shape"),
        numpy_helper.from_array(np.array([2, 4, 5], np.int64), "back_shape"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv_w"], ["c"], name="conv", strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["c", "tokens_shape"], ["tokens"], name="to_tokens"),  # (2, 4, 16)
        helper.make_node("Reshape", ["tokens", "flat_shape"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w"], ["fc"], name="fc", transB=1),  # (8, 5)
        helper.make_node("Reshape", ["fc", "back_shape"], ["h"], name="unflatten"),  # (2, 4, 5)
        helper.make_node("Transpose", ["h"], ["h_t"], name="h_t", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["h_t", "h"], ["attention"], name="attention"),  # activation x activation
        helper.make_node("MatMul", ["attention", "proj_w"], ["p"], name="proj"),  # (2, 5, 3)
        helper.make_node("Slice", ["p", "zero", "three", "one"], ["y"], name="first_rows"),
    ]
    initializers += [
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([3], np.int64), "three"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
    ]
    float_path = tmp_path / "float.onnx"
    onnx.save(make_model(nodes, [x], [y], initializers, opset=17), str(float_path))
    feeds = [{"x": RNG.normal(size=(2, 2, 8, 8)).astype(np.float32)} for _ in range(4)]
    quantized = onnx.load(str(quantize_for_tensorrt(float_path, tmp_path / "int8.onnx", feeds, method="minmax")))
    assert tensorrt_qdq_violations(quantized) == []
    weight_axes = {
        n.input[0]: next((a.i for a in n.attribute if a.name == "axis"), 1)
        for n in quantized.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0].endswith("_quantized")
    }
    assert weight_axes == {"conv_w_quantized": 0, "fc_w_quantized": 0, "proj_w_quantized": 1}, weight_axes
    session = ort.InferenceSession(quantized.SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.run(None, feeds[0])[0].shape == (2, 3, 3)
