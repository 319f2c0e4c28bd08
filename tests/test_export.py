"""Exports: sidecars, every OpenVINO precision, the streaming pair, Q/DQ for TensorRT, bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cli
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from parity import FLOAT32_RELATIVE, assert_within_units, classifier_unit

from calibration.sets import build_from_dataset
from edge_fer.artifacts import read_artifact, sidecar_path
from edge_fer.errors import ArtifactError, BackendError
from edge_fer.models import build_model
from edge_fer.models.checkpoint import save_checkpoint
from edge_fer.models.qat import prepare_qat, qat_state, quantizer_summary
from edge_fer.preprocessing.clips import to_model_input
from edge_fer.presets import get_preset
from edge_fer.runtime.backends import open_backend
from edge_fer.runtime.cpu import cpu_info, isa_cap
from export.qdq import quantize_for_tensorrt, tensorrt_qdq_violations

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
# Bounds in units of the last layer's INT8 step (tests/parity.py), at least twice what was
# measured on a Zen 3 (AVX2 only) with stt_tiny trained 15 and 30 epochs: the same quantized
# network in two engines (QAT torch vs ONNX Runtime, a streaming pair against its full model)
# 0.6-1.8 units; an INT8 model against its FP32 source (which adds the quantization error
# itself) 4.2-7.9 units.
QAT_ENGINES_UNITS = 8
PTQ_UNITS = 16


def run(*args, env=None):
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env or ENV, timeout=900
    )


@pytest.fixture(scope="module")
def data(dfer_data):
    return dfer_data


@pytest.fixture(scope="module")
def checkpoint(trained_stt):
    return trained_stt


@pytest.fixture(scope="module")
def calib(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("calib") / "calib.npz"
    build_from_dataset(get_preset("stt_tiny"), dataset="dfew", root=data, fold=1, samples=14).save(path)
    return path


@pytest.fixture(scope="module")
def clips(data):
    calib = build_from_dataset(get_preset("stt_tiny"), dataset="dfew", root=data, fold=2, samples=6, seed=1)
    return to_model_input(calib.images, get_preset("stt_tiny").preprocessing)


def test_onnx_cli_all_parts_with_verified_sidecars(checkpoint, data, tmp_path):
    out = tmp_path / "model.onnx"
    result = run(
        "-m",
        "export.onnx",
        "--checkpoint",
        str(checkpoint),
        "--out",
        str(out),
        "--part",
        "all",
        "--eval-dataset",
        "dfew",
        "--eval-root",
        str(data),
        "--eval-fold",
        "1",
    )
    assert result.returncode == 0, result.stderr
    # The old --eval-* spellings still work, saying what replaces them (tests/test_export_api.py: the new ones).
    assert "--eval-dataset is deprecated and goes in the next release; use --dataset" in result.stderr
    for name, part in (("model.onnx", "full"), ("model.backbone.onnx", "backbone"), ("model.head.onnx", "head")):
        artifact = read_artifact(tmp_path / name)
        assert artifact.part == part and artifact.precision == "fp32"
        assert artifact.preset.classes == get_preset("stt_tiny").classes
        assert artifact.meta["source"]["sha256"] and artifact.meta["tools"]["onnx"]
    full = read_artifact(out)
    assert full.inputs == {"clip": [None, 16, 3, 64, 64]} and full.meta["metrics"]["data"] == "synthetic"
    inspect = run("-m", "edge_fer", "inspect", str(out))
    assert inspect.returncode == 0 and "verified" in inspect.stdout and "happy" in inspect.stdout
    # The artifact's own evaluation equals the checkpoint's.
    report = json.loads(
        run(
            "-m", "edge_fer", "eval", "--model", str(out), "--dataset", "dfew", "--root", str(data), "--fold", "1"
        ).stdout
    )
    same = json.loads(
        run(
            "-m",
            "edge_fer",
            "eval",
            "--checkpoint",
            str(checkpoint),
            "--dataset",
            "dfew",
            "--root",
            str(data),
            "--fold",
            "1",
        ).stdout
    )
    assert report["confusion_matrix"] == same["confusion_matrix"]


def test_corrupt_or_unknown_artifacts_are_refused(checkpoint, tmp_path):
    out = tmp_path / "model.onnx"
    cli.ran("export.onnx", "--checkpoint", str(checkpoint), "--out", str(out))
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0xFF
    out.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match its sidecar"):
        read_artifact(out)
    result = run("-m", "edge_fer", "inspect", str(out))
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "sha256" in result.stderr and "Traceback" not in result.stderr
    sidecar_path(out).unlink()
    with pytest.raises(ArtifactError, match="no metadata sidecar"):
        read_artifact(out)
    truncated = tmp_path / "other.onnx"
    truncated.write_bytes(b"\x08\x07")
    sidecar_path(truncated).write_text("{not json")
    with pytest.raises(ArtifactError, match="not readable JSON"):
        read_artifact(truncated)


def streaming(backbone_path, head_path, clips, precision):
    """head(stack(backbone(frame_t))) through the runtime backend."""
    with (
        open_backend(backbone_path, backend="openvino", precision=precision) as backbone,
        open_backend(head_path, backend="openvino", precision=precision) as head,
    ):
        b, t = clips.shape[:2]
        tokens = backbone.infer({"frames": clips.reshape(b * t, *clips.shape[2:])})["tokens"]
        return head.infer({"tokens": tokens.reshape(b, t, *tokens.shape[1:])})["logits"]


@pytest.mark.isa
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_openvino_precisions_and_the_streaming_pair(checkpoint, openvino_export, clips, unit, tmp_path, precision):
    if precision == "fp32":
        out = tmp_path / precision
        cli.ran("export.openvino", "--checkpoint", str(checkpoint), "--precision", precision, "--out", str(out))
    else:  # exported once for this and the choice tests (tests/conftest.py)
        out = openvino_export(precision)
    paths = {"model": out / "model.xml", "backbone": out / "model.backbone.xml", "head": out / "model.head.xml"}
    for path in paths.values():
        assert read_artifact(path).precision == precision
    with open_backend(paths["model"], backend="openvino", precision="f32") as full:
        whole = full.infer({"clip": clips})["logits"]
    pair = streaming(paths["backbone"], paths["head"], clips, "f32")
    with torch.no_grad():
        reference = build_model_from(checkpoint)(torch.from_numpy(clips)).numpy()
    if precision == "int8":  # the parts are quantized (calibrated) separately from the full model
        meta = read_artifact(paths["model"]).meta["quantization"]
        assert meta["method"] == "nncf-ptq" and meta["calibration"]["samples"] == 14
        assert_within_units(whole, reference, unit, units=PTQ_UNITS, what="OpenVINO INT8 vs torch FP32")
        assert_within_units(pair, whole, unit, units=PTQ_UNITS, what="OpenVINO INT8 pair vs full model")
    else:
        scale = np.abs(reference).max()
        assert np.abs(pair - whole).max() <= FLOAT32_RELATIVE * scale
        # fp16 weights: each weight's rounding error is <= 2^-11 relative
        assert np.abs(whole - reference).max() <= (FLOAT32_RELATIVE if precision == "fp32" else 5e-3) * scale
    assert (out / "model.bin").stat().st_size > 0 and not (out / "backbone.xml").exists()


def test_frame_path_stays_float_in_post_training_int8(checkpoint, calib, tmp_path):
    """An STT's frame path (train.stt --frame-path) is left in float by OpenVINO post-training
    INT8 (export.openvino.FLOAT_SCOPE: quantized, it erased the class margins it reads); every
    other MatMul of the head still reads INT8 activations."""
    import dataclasses

    import openvino as ov

    from edge_fer.models.checkpoint import load_model

    trained, preset, _ = load_model(checkpoint)
    preset = dataclasses.replace(preset, arch={**preset.arch, "frame_path": True})
    model = build_model(preset)
    model.load_state_dict(trained.state_dict(), strict=False)  # all but the new path, which keeps its init
    source = tmp_path / "frame_path.pt"
    save_checkpoint(source, model=model, preset=preset, kind="stt")
    out = tmp_path / "int8"
    cli.ran(
        "export.openvino", "--checkpoint", str(source), "--precision", "int8", "--calib", str(calib), "--out", str(out)
    )
    for name in ("model.xml", "model.head.xml"):
        matmuls = {
            op.get_friendly_name(): op
            for op in ov.Core().read_model(str(out / name)).get_ops()
            if op.get_type_name() == "MatMul"
        }
        path = [op for key, op in matmuls.items() if "frame_fc" in key]
        assert len(path) == 1 and path[0].input_value(1).get_node().get_type_name() == "Constant"  # float weights
        assert path[0].input_value(0).get_node().get_type_name() != "FakeQuantize"
        classifier = next(op for key, op in matmuls.items() if key.startswith(("__module.head.fc/", "__module.fc/")))
        assert classifier.input_value(0).get_node().get_type_name() == "FakeQuantize"


def build_model_from(checkpoint):
    from edge_fer.models.checkpoint import load_model

    return load_model(checkpoint)[0]


def test_int8_without_calibration_fails_cleanly_and_writes_nothing(checkpoint, tmp_path):
    out = tmp_path / "int8"
    int8 = ("--checkpoint", str(checkpoint), "--precision", "int8", "--out", str(out))
    assert "calibration" in cli.refused("export.openvino", *int8)
    assert not out.exists() or not any(out.iterdir())
    assert "does not exist" in cli.refused("export.openvino", *int8, "--calib", str(tmp_path / "nope.npz"))
    bad = run("-m", "export.openvino", "--checkpoint", str(checkpoint), "--precision", "int4", "--out", str(out))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "int4" in bad.stderr


def test_existing_artifacts_need_force(checkpoint, tmp_path):
    out = tmp_path / "fp32"
    args = ["--checkpoint", str(checkpoint), "--precision", "fp32", "--out", str(out)]
    cli.ran("export.openvino", *args)
    before = (out / "model.xml").read_bytes()
    again = run("-m", "export.openvino", *args)  # a real process: the one-line print and exit code
    assert again.returncode == 1 and "--force" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert (out / "model.xml").read_bytes() == before
    cli.ran("export.openvino", *args, "--force")


def qdq_types(model: onnx.ModelProto) -> set[str]:
    arrays = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            arrays[node.output[0]] = onnx.numpy_helper.to_array(node.attribute[0].t)
    return {str(arrays[n.input[2]].dtype) for n in model.graph.node if n.op_type == "QuantizeLinear"}


def _qdq_model(name: str, folder: Path) -> tuple[Path, list[dict[str, np.ndarray]]]:
    """An untrained model's TensorRT-ready Q/DQ ONNX and the four inputs it was calibrated on."""
    from export.onnx import export_onnx

    torch.manual_seed(0)
    model = build_model(name).eval()
    float_path = export_onnx(model, folder / f"{name}.onnx")
    feeds = [{model.io_names["full"][0]: model.example_input("full", batch=1).numpy()} for _ in range(4)]
    return quantize_for_tensorrt(float_path, folder / f"{name}.int8.onnx", feeds), feeds


@pytest.mark.isa
@pytest.mark.parametrize("name", ["stt_tiny", "htnet_light"])
def test_ort_post_training_qdq_follows_tensorrt_rules(name, tmp_path):
    qdq, feeds = _qdq_model(name, tmp_path)
    graph = onnx.load(str(qdq))
    onnx.checker.check_model(graph)
    assert tensorrt_qdq_violations(graph) == []
    assert qdq_types(graph) == {"int8"}
    quantized_ops = {
        n.op_type
        for n in graph.graph.node
        for i in n.input
        if any(d.output[0] == i for d in graph.graph.node if d.op_type == "DequantizeLinear")
    }
    assert {"Conv", "MatMul"} <= quantized_ops or name == "htnet_light"
    assert not quantized_ops & {"LayerNormalization", "Softmax"}  # these stay in float
    session = ort.InferenceSession(str(qdq), providers=["CPUExecutionProvider"])
    out = session.run(None, feeds[0])[0]
    assert out.shape == (1, len(get_preset(name).classes))


@pytest.mark.isa
@pytest.mark.parametrize("name", ["stt_tiny", "htnet_light"])
def test_qdq_onnx_gives_onnx_runtimes_logits_in_openvino(name, tmp_path, request):
    """TensorRT's input also runs in OpenVINO (edge-fer bench times it there): the same
    quantized graph, the same logits as ONNX Runtime's (uncapped on a Zen 4: stt_tiny within 0.7 %
    of the logits' spread, htnet_light exactly). Under an ISA cap the backend refuses it (next test)."""
    if isa_cap():
        pytest.skip("OpenVINO refuses a Q/DQ ONNX under ONEDNN_MAX_CPU_ISA (see the next test)")
    if name == "stt_tiny" and "avx512" not in cpu_info().features:
        # Under the AVX2 cap on an AVX-512 CPU its first inference failed; on a real AVX2-only
        # CPU not yet run: recorded here whichever way it goes, without failing the run.
        request.applymarker(
            pytest.mark.xfail(reason="stt_tiny's Q/DQ ONNX in OpenVINO not yet checked on an AVX2-only CPU")
        )
    qdq, feeds = _qdq_model(name, tmp_path)
    session = ort.InferenceSession(str(qdq), providers=["CPUExecutionProvider"])
    with open_backend(qdq, backend="openvino", precision="f32") as runner:
        for feed in feeds:
            expected = session.run(None, feed)[0]
            got = next(iter(runner.infer(feed).values()))
            spread = float(expected.max() - expected.min())
            assert np.abs(got - expected).max() <= 0.05 * spread + 1e-5


def test_openvino_refuses_a_qdq_onnx_under_an_isa_cap(tmp_path, monkeypatch):
    """Under ONEDNN_MAX_CPU_ISA OpenVINO's plugin picks INT8 kernels by the real CPU while
    oneDNN's are capped: a Q/DQ ONNX gave wrong logits (htnet_light's below: 0.33 off on a spread
    of 1.3) or failed (stt_tiny's, at its first inference). The backend says so instead; the float model still runs."""
    qdq, feeds = _qdq_model("htnet_light", tmp_path)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    with pytest.raises(BackendError, match=r"ONEDNN_MAX_CPU_ISA=AVX2.*--backend onnxruntime"):
        open_backend(qdq, backend="openvino")
    with open_backend(tmp_path / "htnet_light.onnx", backend="openvino") as runner:
        assert next(iter(runner.infer(feeds[0]).values())).shape == (1, 3)


def test_checker_flags_what_tensorrt_refuses(tmp_path):
    """ONNX Runtime's default (unsigned, asymmetric activations) is not TensorRT-ready."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from export.onnx import export_onnx

    model = build_model("htnet_light").eval()
    float_path = export_onnx(model, tmp_path / "float.onnx")
    items = iter([{"image": model.example_input("full", batch=1).numpy()} for _ in range(2)])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(items, None)

    quantize_static(
        str(float_path),
        str(tmp_path / "u8.onnx"),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        extra_options={"ActivationSymmetric": False},
    )
    problems = tensorrt_qdq_violations(tmp_path / "u8.onnx")
    assert any("uint8" in p for p in problems)
    assert tensorrt_qdq_violations(float_path) == [
        "no QuantizeLinear/DequantizeLinear nodes: not an explicitly quantized model"
    ]


@pytest.fixture(scope="module")
def qat_checkpoints(checkpoint, clips, tmp_path_factory):
    from edge_fer.models.checkpoint import load_model

    folder = tmp_path_factory.mktemp("qat")
    paths = {}
    for target in ("openvino", "tensorrt"):
        torch.manual_seed(0)
        model, preset, _ = load_model(checkpoint)
        model = prepare_qat(model, clips, target=target)
        paths[target] = folder / f"{target}.pt"
        save_checkpoint(
            paths[target], model=model, preset=preset, kind="stt", extra={"qat": qat_state(model), "qat_target": target}
        )
        if target == "tensorrt":
            assert all(k.endswith("/signed") for k in quantizer_summary(model))
    return paths


@pytest.fixture(scope="module")
def unit(checkpoint, clips):
    """Logit change per INT8 step on every classifier input (see tests/parity.py)."""
    return classifier_unit(build_model_from(checkpoint), clips)


@pytest.mark.isa
def test_tensorrt_qat_exports_signed_int8_qdq_matching_torch(qat_checkpoints, clips, unit, tmp_path):
    from edge_fer.models.checkpoint import load_model

    out = tmp_path / "qat.onnx"
    cli.ran("export.onnx", "--checkpoint", str(qat_checkpoints["tensorrt"]), "--out", str(out), "--part", "all")
    for path in (out, tmp_path / "qat.backbone.onnx", tmp_path / "qat.head.onnx"):
        graph = onnx.load(str(path))
        onnx.checker.check_model(graph)
        assert tensorrt_qdq_violations(graph) == [], path.name
        assert qdq_types(graph) == {"int8"}
        assert read_artifact(path).meta["quantization"]["method"] == "nncf-qat"
    model, _, _ = load_model(qat_checkpoints["tensorrt"])
    with torch.no_grad():
        expected = model(torch.from_numpy(clips)).numpy()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {"clip": clips})[0]
    # The same quantized network in two engines: rounding-boundary flips only (tests/parity.py).
    assert_within_units(got, expected, unit, units=QAT_ENGINES_UNITS, what="QAT torch vs ONNX Runtime Q/DQ")
    # The QAT streaming pair composes to the full QAT model.
    backbone = ort.InferenceSession(str(tmp_path / "qat.backbone.onnx"), providers=["CPUExecutionProvider"])
    head = ort.InferenceSession(str(tmp_path / "qat.head.onnx"), providers=["CPUExecutionProvider"])
    b, t = clips.shape[:2]
    tokens = backbone.run(None, {"frames": clips.reshape(b * t, *clips.shape[2:])})[0]
    pair = head.run(None, {"tokens": tokens.reshape(b, t, *tokens.shape[1:])})[0]
    assert_within_units(pair, got, unit, units=QAT_ENGINES_UNITS, what="QAT streaming pair vs full model")


def test_openvino_qat_ir_and_tensorrt_refusal(qat_checkpoints, tmp_path):
    ov_out = tmp_path / "ov"
    cli.ran(
        "export.openvino",
        "--checkpoint",
        str(qat_checkpoints["openvino"]),
        "--precision",
        "int8",
        "--qat",
        "--out",
        str(ov_out),
    )
    assert read_artifact(ov_out / "model.xml").meta["quantization"] == {"method": "nncf-qat", "target": "openvino"}
    trt = ("--checkpoint", str(qat_checkpoints["openvino"]), "--precision", "int8", "--out", str(tmp_path / "m.engine"))
    assert "signed INT8" in cli.refused("export.trt", *trt)
    assert not (tmp_path / "m.int8.onnx").exists()


NO_TORCH = """
import importlib.abc, runpy, sys
class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("No module named 'torch'", name=name)
sys.meta_path.insert(0, _NoTorch())
sys.argv = ["export.trt"] + sys.argv[1:]
runpy.run_module("export.trt", run_name="__main__")
"""


@pytest.mark.skipif(__import__("importlib").util.find_spec("tensorrt") is not None, reason="TensorRT is installed")
def test_export_trt_without_tensorrt_writes_engine_ready_onnx(checkpoint, calib, tmp_path):
    engine = tmp_path / "model.engine"
    result = run(
        "-m",
        "export.trt",
        "--checkpoint",
        str(checkpoint),
        "--precision",
        "int8",
        "--calib",
        str(calib),
        "--out",
        str(engine),
    )
    assert result.returncode == 3, result.stderr[-2000:]
    ready = tmp_path / "model.int8.onnx"
    assert tensorrt_qdq_violations(ready) == []
    assert read_artifact(ready).meta["quantization"]["method"] == "ort-ptq"
    assert "trtexec --onnx=" in result.stderr and "--int8" in result.stderr and not engine.exists()
    # On the Jetson: the engine-ready ONNX alone, without torch.
    fp16 = run(
        "-m", "export.trt", "--checkpoint", str(checkpoint), "--precision", "fp16", "--out", str(tmp_path / "h.engine")
    )
    assert fp16.returncode == 3
    onnx_fp16 = onnx.load(str(tmp_path / "h.fp16.onnx"))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in onnx_fp16.graph.initializer)
    jetson = run("-c", NO_TORCH, "--onnx", str(ready), "--precision", "int8", "--out", str(tmp_path / "j.engine"))
    assert jetson.returncode == 3, jetson.stderr[-2000:]
    assert "trtexec" in jetson.stderr


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("tensorrt") is None,
    reason="TensorRT is not installed here (it installs only on the target; see docs)",
)
def test_tensorrt_engine_build(checkpoint, calib, tmp_path):
    engine = tmp_path / "model.engine"
    result = run(
        "-m",
        "export.trt",
        "--checkpoint",
        str(checkpoint),
        "--precision",
        "int8",
        "--calib",
        str(calib),
        "--out",
        str(engine),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert read_artifact(engine).meta["tensorrt"]["tensorrt"]


def test_calibration_cli_is_stratified_cached_and_tamper_checked(checkpoint, data, tmp_path):
    out = tmp_path / "calib.npz"
    args = [
        "--checkpoint",
        str(checkpoint),
        "--dataset",
        "dfew",
        "--root",
        str(data),
        "--fold",
        "1",
        "--samples",
        "14",
        "--out",
        str(out),
    ]
    summary = json.loads(cli.ran("calibration.__main__", *args))
    assert summary["per_class"] == {str(c): 2 for c in range(7)}
    again = cli.ran("calibration.__main__", *args)
    assert "up to date" in again and summary["sha256"] in again
    with np.load(out) as content:
        images, labels, meta = content["images"].copy(), content["labels"], content["meta"]
    images[0, 0, 0, 0, 0] ^= 1
    np.savez(out, images=images, labels=labels, meta=meta)
    assert "does not match its recorded hash" in cli.refused("calibration.__main__", *args)


def test_latency_benchmark_runs(checkpoint, tmp_path):
    onnx_path = tmp_path / "model.onnx"
    cli.ran("export.onnx", "--checkpoint", str(checkpoint), "--out", str(onnx_path))
    result = run(
        "-m",
        "benchmarks.latency",
        str(onnx_path),
        "--backend",
        "onnxruntime",
        "--iters",
        "5",
        "--warmup",
        "1",
        "--json",
        str(tmp_path / "t.json"),
    )
    assert result.returncode == 0, result.stderr
    (row,) = json.loads((tmp_path / "t.json").read_text())
    assert row["iters"] == 5 and row["p50_ms"] > 0 and row["p90_ms"] >= row["p50_ms"]


def test_htnet_int8_from_micro_expression_calibration(tmp_path):
    from edge_fer.data.synth import write_micro

    root = write_micro(tmp_path / "me", subjects=2, clips_per_subject=6, seed=5, workers=2)
    preset = get_preset("htnet_light")
    checkpoint = tmp_path / "htnet.pt"
    save_checkpoint(
        checkpoint,
        model=build_model(preset),
        preset=preset,
        kind="htnet",
        extra={"features": {"flow": "farneback", "patches": "xy"}},
    )
    out = tmp_path / "ov"
    result = run(
        "-m",
        "export.openvino",
        "--checkpoint",
        str(checkpoint),
        "--precision",
        "int8",
        "--calib",
        f"dataset=casme2,root={root},samples=12",
        "--out",
        str(out),
        "--dataset",
        "casme2",
        "--root",
        str(root),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "deprecated" not in result.stderr
    artifact = read_artifact(out / "model.xml")
    assert artifact.meta["features"] == {"flow": "farneback", "patches": "xy"}
    assert artifact.meta["metrics"]["samples"] == 12 and artifact.meta["quantization"]["calibration"]["samples"] == 12
