"""The exporters' Python API (no command line): written artifacts and sidecars, part names,
settings that contradict the checkpoint, and the old ``--eval-*`` spellings."""

import pytest

from edge_fer.artifacts import read_artifact, sidecar_path
from edge_fer.data.spec import DataSpec
from edge_fer.errors import OutputExistsError
from edge_fer.models import build_model
from edge_fer.models.checkpoint import save_checkpoint
from edge_fer.presets import get_preset
from export.settings import ExportRequestError, QuantizationSettings, check_artifact_suffix


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained ``stt_tiny`` checkpoint: file layout and metadata do not need trained weights."""
    path = tmp_path_factory.mktemp("api") / "stt_tiny.pt"
    return save_checkpoint(path, model=build_model("stt_tiny"), preset=get_preset("stt_tiny"), kind="stt")


def test_onnx_from_python_writes_every_part_with_its_sidecar_and_metrics(checkpoint, dfer_data, tmp_path):
    from export.onnx import export_checkpoint_onnx

    lines = []
    evaluation = DataSpec("dfew", dfer_data, fold=1)
    written = export_checkpoint_onnx(
        checkpoint, tmp_path / "m.onnx", parts="all", evaluation=evaluation, log=lines.append
    )
    assert written == [tmp_path / "m.onnx", tmp_path / "m.backbone.onnx", tmp_path / "m.head.onnx"]
    for path, part in zip(written, ("full", "backbone", "head")):
        artifact = read_artifact(path)  # verifies the sha256 the sidecar records
        assert sidecar_path(path).is_file() and artifact.part == part and artifact.precision == "fp32"
        assert artifact.meta["source"]["checkpoint"] == str(checkpoint)
    metrics = read_artifact(written[0]).meta["metrics"]
    assert metrics["data"] == "synthetic" and metrics["dataset"] == "dfew" and metrics["fold"] == 1
    assert metrics["split"] == "test" and 0 <= metrics["uar"] <= 1
    assert not read_artifact(written[1]).meta["metrics"]  # parts are not evaluated
    assert any(line.startswith("wrote ") for line in lines)
    with pytest.raises(OutputExistsError, match="already exists"):
        export_checkpoint_onnx(checkpoint, tmp_path / "m.onnx")


def test_openvino_from_python_names_parts_by_the_artifact_rule(checkpoint, tmp_path):
    from export.openvino import export_openvino

    written = export_openvino(checkpoint, tmp_path / "ov", precision="fp16")
    assert written == [tmp_path / "ov" / name for name in ("model.xml", "model.backbone.xml", "model.head.xml")]
    for path, part in zip(written, ("full", "backbone", "head")):
        artifact = read_artifact(path)
        assert path.with_suffix(".bin").is_file() and artifact.part == part and artifact.precision == "fp16"
        assert artifact.meta["quantization"] == {"method": "none"} and not artifact.meta["metrics"]
    only_head = export_openvino(checkpoint, tmp_path / "head", precision="fp32", parts="head")
    assert only_head == [tmp_path / "head" / "model.head.xml"] and not (tmp_path / "head" / "model.xml").exists()


def test_int8_from_python_takes_a_calibration_set(checkpoint, dfer_data, tmp_path):
    from calibration.sets import build_from_dataset
    from export.openvino import export_openvino

    calibration = build_from_dataset(get_preset("stt_tiny"), dataset="dfew", root=dfer_data, fold=1, samples=7)
    (path,) = export_openvino(checkpoint, tmp_path / "ov", precision="int8", parts="full", calibration=calibration)
    quantization = read_artifact(path).meta["quantization"]
    assert quantization["method"] == "nncf-ptq" and quantization["calibration"]["sha256"] == calibration.sha256


def test_requests_that_contradict_the_checkpoint_are_refused_before_any_work(checkpoint, tmp_path):
    from export.onnx import export_checkpoint_onnx
    from export.openvino import export_openvino
    from export.trt import EngineSettings, export_tensorrt

    with pytest.raises(ExportRequestError, match="not a QAT checkpoint"):
        export_openvino(checkpoint, tmp_path / "ov", precision="int8", quantization=QuantizationSettings("qat"))
    with pytest.raises(ExportRequestError, match="has parts full, backbone, head, not tail"):
        export_checkpoint_onnx(checkpoint, tmp_path / "m.onnx", parts="tail")
    with pytest.raises(ExportRequestError, match=r"must end in \.engine or \.plan"):
        export_tensorrt(checkpoint, tmp_path / "m.onnx", precision="fp16")
    with pytest.raises(ExportRequestError, match="accuracy-controlled INT8 is OpenVINO's"):
        controlled = QuantizationSettings("accuracy-controlled", max_drop=0.01, validation="val.npz")
        export_tensorrt(checkpoint, tmp_path / "m.plan", precision="int8", quantization=controlled)
    with pytest.raises(ValueError, match="precision must be one of"):
        export_tensorrt(checkpoint, tmp_path / "m.engine", precision="fp32")
    with pytest.raises(ValueError, match="needs max_drop"):
        QuantizationSettings("accuracy-controlled")
    with pytest.raises(ValueError, match="max_batch"):
        EngineSettings(max_batch=0)
    assert not any(tmp_path.iterdir())
    assert check_artifact_suffix(tmp_path / "m.PLAN", "tensorrt").name == "m.PLAN"


def test_quantization_method_follows_the_checkpoint_unless_given():
    default = QuantizationSettings()
    assert default.method_for("a.pt", qat=False, precision="int8") == "ptq"
    assert default.method_for("a.pt", qat=True, precision="int8") == "qat"
    assert default.method_for("a.pt", qat=False, precision="fp16") is None
    with pytest.raises(ExportRequestError, match="export it with --precision int8"):
        default.method_for("a.pt", qat=True, precision="fp32")
    with pytest.raises(ExportRequestError, match="its INT8 comes from training"):
        QuantizationSettings("ptq").method_for("a.pt", qat=True, precision="int8")


@pytest.mark.parametrize("tool", ["export.onnx", "export.openvino"])
def test_old_eval_spellings_still_work_and_say_what_replaces_them(tool, tmp_path, capsys):
    import importlib

    parser = importlib.import_module(tool).build_parser()
    argv = ["--checkpoint", "c.pt", "--out", str(tmp_path / "m.onnx"), "--eval-dataset", "dfew"]
    argv += ["--eval-root", str(tmp_path), "--eval-fold", "2"] + (["--precision", "fp32"] if "openvino" in tool else [])
    args = parser.parse_args(argv)
    assert DataSpec.from_args(args) == DataSpec("dfew", tmp_path, fold=2)
    err = capsys.readouterr().err
    for old, new in (("--eval-dataset", "--dataset"), ("--eval-root", "--root"), ("--eval-fold", "--fold")):
        assert f"{old} is deprecated and goes in the next release; use {new}" in err
    new = parser.parse_args([*argv[:4], "--dataset", "dfew", "--root", str(tmp_path), *argv[10:]])
    assert DataSpec.from_args(new) == DataSpec("dfew", tmp_path) and "deprecated" not in capsys.readouterr().err


def test_calibration_file_is_reused_when_built_the_same_way(dfer_data, tmp_path):
    from calibration.sets import calibration_file

    preset, data = get_preset("stt_tiny"), DataSpec("dfew", dfer_data, fold=1)
    first, reused = calibration_file(tmp_path / "c.npz", preset, data=data, samples=7)
    assert not reused and len(first) == 7
    again, reused = calibration_file(tmp_path / "c.npz", preset, data=data, samples=7)
    assert reused and again.sha256 == first.sha256
    other, reused = calibration_file(tmp_path / "c.npz", preset, data=data, samples=7, seed=1)
    assert not reused and other.meta["source"]["seed"] == 1
