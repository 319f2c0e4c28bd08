"""export.trt and export.fp16 without TensorRT: FP16 block list, trtexec lines, DLA and timing-cache handling,
and the on-device commands of docs/jetson.md.

Builder-side checks run against test doubles of TensorRT's builder interface (``FakeBuilder``,
``FakeBuilderConfig``): they check edge-fer's handling of TensorRT's answers, not TensorRT. The
last test builds real engines and is skipped where TensorRT is absent.
"""

import re
import shlex
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_fer.errors import BackendError
from export.fp16 import convert_to_fp16
from export.trt import (
    attach_timing_cache,
    build_parser,
    check_dla_core,
    layers_off_dla,
    main,
    profile_batches,
    trtexec_commands,
)

ROOT = Path(__file__).resolve().parents[1]
JETSON_DOC = ROOT / "docs" / "jetson.md"


# --- FP16 --------------------------------------------------------------------------------------


def resize_range_model() -> onnx.ModelProto:
    """Conv -> Resize (x2) + Range ramp -> Softmax: ONNX has no float16 Range, ORT's Resize runs float32."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])
    rng = np.random.default_rng(0)
    initializers = [
        numpy_helper.from_array(rng.normal(size=(2, 2, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
        numpy_helper.from_array(np.array(0.0, np.float32), "start"),
        numpy_helper.from_array(np.array(8.0, np.float32), "limit"),
        numpy_helper.from_array(np.array(0.5, np.float32), "delta"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Resize", ["c", "", "scales"], ["r"], name="resize", mode="linear"),
        helper.make_node("Range", ["start", "limit", "delta"], ["ramp"], name="range"),  # 16 values
        helper.make_node("Slice", ["ramp", "zero", "eight"], ["ramp8"], name="first8"),
        helper.make_node("Add", ["r", "ramp8"], ["s"], name="add"),
        helper.make_node("Softmax", ["s"], ["y"], name="softmax", axis=-1),
    ]
    initializers += [
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([8], np.int64), "eight"),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "fp16", [x], [y], initializers), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    return model


def input_types(model: onnx.ModelProto) -> dict[str, set[int]]:
    """Node name -> element types of its (non-empty) inputs."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {i.name: i.data_type for i in inferred.graph.initializer}
    for info in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        types[info.name] = info.type.tensor_type.elem_type
    return {node.name: {types[i] for i in node.input if i and i in types} for node in inferred.graph.node}


def test_fp16_keeps_onnxconverter_defaults_and_ours_in_float32_and_ort_runs_it(tmp_path):
    model = resize_range_model()
    onnx.save(model, str(tmp_path / "float.onnx"))
    converted = onnx.load(str(convert_to_fp16(tmp_path / "float.onnx", tmp_path / "fp16.onnx")))
    types = input_types(converted)
    assert types["conv"] == {TensorProto.FLOAT16}  # the bulk is float16
    for kept in ("resize", "range", "softmax"):  # converter defaults (Resize, Range) and ours (Softmax)
        assert TensorProto.FLOAT16 not in types[kept], (kept, types[kept])
    x = np.random.default_rng(1).normal(size=(1, 2, 4, 4)).astype(np.float32)
    reference = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    half = ort.InferenceSession(str(tmp_path / "fp16.onnx"), providers=["CPUExecutionProvider"])
    (expected,) = reference.run(None, {"x": x})
    (got,) = half.run(None, {"x": x})
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-3)


# --- trtexec lines and profiles ------------------------------------------------------------------

CLIP = {"clip": [None, 16, 3, 112, 112]}


def test_trtexec_lines_for_tensorrt_before_and_from_11():
    commands = trtexec_commands(Path("m.int8.onnx"), Path("m.engine"), CLIP, "int8", max_batch=8, workspace=2048)
    shapes = "--minShapes=clip:1x16x3x112x112 --optShapes=clip:4x16x3x112x112 --maxShapes=clip:8x16x3x112x112"
    assert shapes in commands["tensorrt<11"] and shapes in commands["tensorrt>=11"]
    assert commands["tensorrt<11"].endswith("--int8 --fp16")
    assert not re.search(r"--(int8|fp16|bf16|best)\b", commands["tensorrt>=11"])  # gone in trtexec 11
    fp16 = trtexec_commands(Path("m.fp16.onnx"), Path("m.engine"), CLIP, "fp16", max_batch=8, workspace=2048)
    assert fp16["tensorrt<11"].endswith(" --fp16") and "--int8" not in fp16["tensorrt<11"]


def test_dla_profile_is_fixed_and_trtexec_asks_for_the_core():
    assert profile_batches(8, fixed=False) == (1, 4, 8)
    assert profile_batches(1, fixed=False) == (1, 1, 1)
    assert profile_batches(4, fixed=True) == (4, 4, 4)
    line = trtexec_commands(Path("m.onnx"), Path("m.engine"), CLIP, "int8", max_batch=2, workspace=64, dla_core=1)
    assert "--minShapes=clip:2x16x3x112x112 --optShapes=clip:2x16x3x112x112 --maxShapes=clip:2x" in line["tensorrt<11"]
    assert "--useDLACore=1 --allowGPUFallback" in line["tensorrt>=11"]


# --- DLA and timing cache, against test doubles of TensorRT's builder --------------------------


class FakeBuilder:
    """Test double of TensorRT's IBuilder (only ``num_DLA_cores``); not a TensorRT run."""

    def __init__(self, dla_cores: int):
        self.num_DLA_cores = dla_cores


def test_dla_core_the_device_lacks_is_a_one_line_error():
    with pytest.raises(BackendError, match=r"--dla-core 0: TensorRT 11\.1\.0 sees no DLA.*drop --dla-core"):
        check_dla_core(FakeBuilder(0), 0, "11.1.0")
    with pytest.raises(BackendError, match="has 2 DLA core\\(s\\), numbered 0 to 1"):
        check_dla_core(FakeBuilder(2), 2, "10.3.0")
    check_dla_core(FakeBuilder(2), 1, "10.3.0")


class FakeLayer:
    def __init__(self, name: str, on_dla: bool):
        self.name, self.on_dla = name, on_dla


class FakeNetwork:
    """Test double of TensorRT's INetworkDefinition (layers only)."""

    def __init__(self, layers: list[FakeLayer]):
        self.layers = layers
        self.num_layers = len(layers)

    def get_layer(self, index: int) -> FakeLayer:
        return self.layers[index]


class FakeBuilderConfig:
    """Test double of TensorRT's IBuilderConfig: DLA placement and timing caches; not a TensorRT run.

    A serialized cache is accepted by ``set_timing_cache`` only if it was made "here" (b"here:...").
    """

    def __init__(self):
        self.attached = None

    def can_run_on_DLA(self, layer: FakeLayer) -> bool:
        return layer.on_dla

    def create_timing_cache(self, blob: bytes):
        return {"blob": bytes(blob)}

    def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:
        assert ignore_mismatch is False
        if cache["blob"] and not cache["blob"].startswith(b"here:"):
            return False
        self.attached = cache
        return True


def test_layers_that_cannot_run_on_the_dla_are_named():
    network = FakeNetwork([FakeLayer("conv1", True), FakeLayer("attention/softmax", False), FakeLayer("fc", True)])
    assert layers_off_dla(network, FakeBuilderConfig()) == ["attention/softmax"]


def test_timing_cache_new_reused_and_mismatched(tmp_path, capsys):
    config = FakeBuilderConfig()
    assert attach_timing_cache(config, None) == (None, "none")
    cache, status = attach_timing_cache(config, tmp_path / "absent.cache")
    assert status == "new" and config.attached is cache
    (tmp_path / "ours.cache").write_bytes(b"here:tactics")
    cache, status = attach_timing_cache(config, tmp_path / "ours.cache")
    assert status == "reused" and cache["blob"] == b"here:tactics" and config.attached is cache
    (tmp_path / "other.cache").write_bytes(b"another GPU")
    cache, status = attach_timing_cache(config, tmp_path / "other.cache")
    assert status == "replaced" and cache["blob"] == b"" and config.attached is cache
    assert "other.cache was made on another GPU or TensorRT version" in capsys.readouterr().err


# --- command line and docs/jetson.md -------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, message",
    [(["--max-batch", "0"], "(--max-batch) must be at least 1"), (["--dla-core", "-1"], "(--dla-core) is a DLA core")],
)
def test_bad_batch_or_dla_core_is_a_usage_error(extra, message, tmp_path, capsys):
    argv = ["--onnx", str(tmp_path / "m.onnx"), "--precision", "int8", "--out", str(tmp_path / "m.engine"), *extra]
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def doc_commands(program: str) -> list[list[str]]:
    """Every command in docs/jetson.md's bash blocks that starts with ``program`` (continuations joined)."""
    blocks = re.findall(r"```bash\n(.*?)```", JETSON_DOC.read_text(), flags=re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [shlex.split(line.split("  #")[0]) for line in lines if line.strip().startswith(program)]


def test_on_device_build_commands_in_the_jetson_doc_parse():
    commands = [c for c in doc_commands("python3 -m export.trt")]
    assert len(commands) >= 2  # GPU and DLA
    parser = build_parser()
    for command in commands:
        args = parser.parse_args(command[3:])  # a usage error exits 2 here
        assert args.onnx and args.precision in ("fp16", "int8") and args.out.suffix == ".engine"


def test_jetson_doc_installs_edge_fer_from_a_wheel_and_pins_cuda_python_for_jetpack6():
    installs = [" ".join(c) for c in doc_commands("pip install")]
    assert installs and not any(re.search(r"(^| )edge-fer( |$|\[)", c) for c in installs), installs
    assert any("cuda-python==12.6.*" in c for c in installs)
    assert any(c.startswith("pip wheel --no-deps .") for c in (" ".join(c) for c in doc_commands("pip wheel")))
    trtexec = [" ".join(c) for c in doc_commands("/usr/src/tensorrt/bin/trtexec")]
    assert sum("--int8" in c for c in trtexec) == 1 and len(trtexec) == 2  # < 11 and 11.x


# --- real engines, where TensorRT is installed ----------------------------------------------------


def test_real_timing_cache_is_written_then_reused(tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed here (it comes with JetPack / NVIDIA GPUs)")
    from export.trt import build_engine

    model = resize_range_model()
    onnx.save(model, str(tmp_path / "m.onnx"))
    options = dict(precision="fp16", inputs={"x": [1, 2, 4, 4]}, max_batch=1, workspace=64, dla_core=None)
    first = build_engine(
        tmp_path / "m.onnx", tmp_path / "a.engine", timing_cache=tmp_path / "t.cache", force=True, **options
    )
    second = build_engine(
        tmp_path / "m.onnx", tmp_path / "b.engine", timing_cache=tmp_path / "t.cache", force=True, **options
    )
    assert (first["timing_cache"], second["timing_cache"]) == ("new", "reused")
    assert (tmp_path / "t.cache").stat().st_size > 0
