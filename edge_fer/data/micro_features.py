"""Micro-expression pre-processing with an on-disk cache.

For every ``MicroRecord``: find the apex (annotated, or spotted from motion), detect the face
and its 5 landmarks on the onset frame, align onset and apex with the same warp, compute
optical flow and strain, and cut HTNet's 28x28 four-patch image. Each result is cached as a
small .npz keyed by the sample, its frames and the settings, so training epochs (and LOSO
folds) never recompute flow.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_fer.data.records import MicroRecord
from edge_fer.errors import DatasetError
from edge_fer.fileio import atomic_output
from edge_fer.preprocessing.flow import ALIGN_SIZE, aligned_pair, micro_image, spot_apex

__all__ = ["MicroFeatureConfig", "MicroFeatures", "compute_micro_features"]


@dataclass(frozen=True)
class MicroFeatureConfig:
    """Settings that change the features (and therefore the cache key).

    Attributes:
        method: optical flow, "farneback" or "dis".
        convention: patch crop convention, "xy" or "official" (see ``edge_fer.preprocessing.micro_input``).
    """

    method: str = "farneback"
    convention: str = "xy"

    def key(self) -> str:
        return json.dumps({**asdict(self), "align": ALIGN_SIZE, "version": 2}, sort_keys=True)


@dataclass
class MicroFeatures:
    """Features of a list of records, index-aligned with it.

    Attributes:
        images: (N, 28, 28, 3) uint8 HTNet inputs (u, v, strain).
        apex: (N,) apex frame number used.
        apex_spotted: (N,) True where the apex was not annotated and was spotted.
        face_found: (N,) False where no face was detected and the whole frame was used.
    """

    images: np.ndarray
    apex: np.ndarray
    apex_spotted: np.ndarray
    face_found: np.ndarray


def _read(path: Path, record: MicroRecord) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:
        raise DatasetError(f"{record.dataset} {record.sample_id}: cannot read frame {path}")
    return image


def _landmarks(detector, frames: Sequence[np.ndarray]) -> tuple[np.ndarray, bool]:
    """Landmarks of the most confident face in the first frame that has one."""
    for frame in frames:
        found = detector.detect(frame)
        if len(found):
            return found.top(1).landmarks[0], True
    # No face: treat the frame as a face crop in the canonical layout.
    from edge_fer.preprocessing.align import canonical_landmarks

    height, width = frames[0].shape[:2]
    return canonical_landmarks(1) * np.array([width, height], np.float32), False


def _cache_path(cache_dir: Path, record: MicroRecord, config: MicroFeatureConfig) -> Path:
    stats = [(str(p), p.stat().st_size) for p in (record.frames[0], record.frames[-1])]
    blob = json.dumps([record.dataset, record.sample_id, record.onset, record.apex, record.offset, stats, config.key()])
    return cache_dir / record.dataset / f"{hashlib.sha1(blob.encode()).hexdigest()[:20]}.npz"


def _compute_one(record: MicroRecord, detector, config: MicroFeatureConfig) -> dict[str, np.ndarray]:
    onset = _read(record.frame_path(record.onset), record)
    apex_number = record.apex
    if apex_number is not None:
        apex = _read(record.frame_path(apex_number), record)
        landmarks, found = _landmarks(detector, [onset, apex])
        spotted = False
    else:
        last = record.offset if record.offset is not None else record.frame_numbers[-1]
        numbers = [n for n in record.frame_numbers if record.onset <= n <= last]
        frames = [_read(record.frame_path(n), record) for n in numbers]
        landmarks, found = _landmarks(detector, frames[:1] + frames[len(frames) // 2 : len(frames) // 2 + 1])
        aligned = [aligned_pair(frames[0], f, landmarks)[1] for f in frames]
        apex_number = numbers[spot_apex(aligned)]
        apex = frames[numbers.index(apex_number)]
        spotted = True
    image = micro_image(onset, apex, landmarks, method=config.method, convention=config.convention)
    return {"image": image, "apex": np.int64(apex_number), "spotted": np.bool_(spotted), "found": np.bool_(found)}


def compute_micro_features(
    records: Sequence[MicroRecord],
    *,
    cache_dir: str | Path,
    config: MicroFeatureConfig = MicroFeatureConfig(),
    detector=None,
    progress: Callable[[int, int], None] | None = None,
) -> MicroFeatures:
    """Features for ``records``, computed once and then read from ``cache_dir``.

    Args:
        records: the samples.
        cache_dir: folder for the cache (created).
        config: flow and patch settings.
        detector: a ``FaceDetector``; None opens the default (RetinaFace, else Haar).
        progress: called with (done, total) after each record.
    """
    cache_dir = Path(cache_dir)
    results = []
    for index, record in enumerate(records, start=1):
        path = _cache_path(cache_dir, record, config)
        if path.exists():
            with np.load(path) as cached:
                results.append({k: cached[k] for k in cached.files})
        else:
            if detector is None:
                from edge_fer.runtime.detection import open_face_detector

                detector = open_face_detector()
            result = _compute_one(record, detector, config)
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(path, force=True) as tmp:
                with open(tmp, "wb") as handle:
                    np.savez(handle, **result)
            results.append(result)
        if progress:
            progress(index, len(records))
    if not results:
        return MicroFeatures(
            np.zeros((0, 28, 28, 3), np.uint8), np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0, bool)
        )
    return MicroFeatures(
        images=np.stack([r["image"] for r in results]),
        apex=np.array([int(r["apex"]) for r in results]),
        apex_spotted=np.array([bool(r["spotted"]) for r in results]),
        face_found=np.array([bool(r["found"]) for r in results]),
    )
