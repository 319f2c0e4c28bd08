"""edge-fer camera --model FOLDER: the fastest artifact here whose recorded accuracy is within bound."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_fer.data.face_video import write_face_video
from edge_fer.errors import ArtifactError, BackendError
from edge_fer.runtime.choose import choose_model

ROOT = Path(__file__).resolve().parents[1]


def run(*args, env=None):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=900, env=env)


@pytest.fixture(scope="module")
def folder(trained_stt, dfer_data, openvino_export, tmp_path_factory):
    """One model in four artifacts: FP32 ONNX and OpenVINO INT8 with recorded UAR, an FP16 IR
    without, and an INT8 IR whose recorded UAR is 5 points below FP32's.

    The INT8 IR's recorded UAR is then set half a point below FP32's (inside the 1-point
    bound): its own figure comes from fold 2's 7 clips, where one clip moves UAR by 0.14, so
    whether INT8 lands within a point of FP32 there is chance (a fresh clone's run once recorded
    0.00 against FP32's 0.14). The choice's rules are what these tests check."""
    models = tmp_path_factory.mktemp("models")
    evaluation = ["--dataset", "dfew", "--root", str(dfer_data), "--fold", "2"]
    export = ["-m", "export.onnx", "--checkpoint", str(trained_stt), "--out", str(models / "fp32" / "model.onnx")]
    result = run(*export, "--part", "all", *evaluation)
    assert result.returncode == 0, result.stderr[-2000:]
    # The session's OpenVINO exports (tests/conftest.py), copied: their sidecars are changed below.
    for name, precision in (("ov_int8", "int8"), ("ov_int8_worse", "int8"), ("ov_fp16", "fp16")):
        shutil.copytree(openvino_export(precision), models / name)
    reference = json.loads((models / "fp32" / "model.onnx.json").read_text())["metrics"]["uar"]
    for name, uar in (("ov_int8", reference - 0.005), ("ov_int8_worse", reference - 0.05)):
        sidecar = models / name / "model.xml.json"
        meta = json.loads(sidecar.read_text())
        assert "uar" in meta["metrics"]  # exported with an evaluation: the figure is replaced, not made up
        meta["metrics"]["uar"] = uar
        sidecar.write_text(json.dumps(meta))
    return models


def test_the_fastest_eligible_artifact_is_chosen_and_cached(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    choice = choose_model(folder, stride=4)
    by_name = {c.path.parent.name: c for c in choice.candidates}
    assert "no recorded accuracy" in by_name["ov_fp16"].excluded
    assert "below FP32" in by_name["ov_int8_worse"].excluded
    eligible = [c for c in choice.candidates if c.excluded is None]
    assert {c.path.parent.name for c in eligible} == {"fp32", "ov_int8"}
    assert all(c.ms_per_frame > 0 and not c.cached for c in eligible)
    assert choice.chosen is min(eligible, key=lambda c: c.ms_per_frame)
    assert choice.model.path == choice.chosen.path
    choice.model.close()
    again = choose_model(folder, stride=4)  # the timings are kept per CPU: nothing is timed again
    assert all(c.cached for c in again.candidates if c.excluded is None)
    assert again.chosen.path == choice.chosen.path
    again.model.close()


def test_forced_precision_and_nothing_eligible(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    forced = choose_model(folder, stride=4, precision="fp16")  # forced: taken without recorded accuracy
    assert forced.chosen.path.parent.name == "ov_fp16"
    forced.model.close()
    with pytest.raises(ArtifactError, match="no usable model.*ov_fp16.*no recorded accuracy"):
        choose_model(_only(folder, "ov_fp16", tmp_path), stride=4)


def test_an_artifact_that_cannot_run_here_is_skipped_with_the_reason(
    folder, trained_stt, dfer_data, tmp_path, monkeypatch
):
    """One eligible export this device cannot run must not stop the camera while another can:
    here the TensorRT-ready Q/DQ ONNX, which OpenVINO refuses under an ISA cap."""
    models = tmp_path / "models"
    shutil.copytree(folder, models)
    calib = f"dataset=dfew,root={dfer_data},fold=2,samples=8"
    qdq = ["-m", "export.trt", "--checkpoint", str(trained_stt), "--precision", "int8", "--calib", calib]
    result = run(*qdq, "--out", str(models / "trt_int8" / "model.engine"))
    assert result.returncode in (0, 3), result.stderr[-2000:]  # 3: no TensorRT here, the Q/DQ ONNX written
    sidecar = models / "trt_int8" / "model.int8.onnx.json"
    meta = json.loads(sidecar.read_text())
    reference = json.loads((models / "fp32" / "model.onnx.json").read_text())["metrics"]
    meta["metrics"] = dict(reference)  # eligible: the rule under test is the next one
    sidecar.write_text(json.dumps(meta))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    choice = choose_model(models, stride=4)
    by_name = {c.path.parent.name: c for c in choice.candidates}
    assert by_name["trt_int8"].excluded.startswith("cannot run here: OpenVINO cannot run an INT8 Q/DQ ONNX")
    assert choice.chosen.path.parent.name in {"fp32", "ov_int8"}
    choice.model.close()
    with pytest.raises(BackendError, match="Q/DQ ONNX"):  # alone, its error is the user's to read as it is
        choose_model(_only(models, "trt_int8", tmp_path), stride=4)


def _only(folder, name, tmp_path):
    single = tmp_path / "single"
    (single / name).mkdir(parents=True)
    for file in (folder / name).iterdir():
        (single / name / file.name).write_bytes(file.read_bytes())
    return single


def test_camera_prints_its_choice_and_explains_the_old_precision_flag(folder, tmp_path):
    video = tmp_path / "faces.mp4"
    write_face_video(video, seconds=3, fps=15)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    base = ["-m", "edge_fer", "camera", "--model", str(folder), "--source", str(video), "--max-frames", "30"]
    result = run(*base, "--stats-json", str(tmp_path / "stats.json"), env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    chose = [line for line in result.stderr.splitlines() if "chose" in line]
    assert len(chose) == 1 and "within 0.01 UAR of FP32" in chose[0], result.stderr
    assert "ov_int8_worse" in result.stderr and "below FP32" in result.stderr
    assert json.loads((tmp_path / "stats.json").read_text())["frames"] == 30
    old = run(*base, "--precision", "f32", env=env)
    assert old.returncode == 2 and "--infer-precision f32" in old.stderr
