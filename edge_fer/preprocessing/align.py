"""5-point face alignment: a similarity warp of the face onto a canonical crop.

The canonical crop is edge-fer's face-crop convention, used the same way for training
data pre-processing, calibration sets and the runtime: the face (eyes to mouth) fills about
half of a square crop, centred, eyes level. Landmarks are in the 5-point order of
``Detections``.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["CANONICAL_LANDMARKS", "canonical_landmarks", "similarity_transform", "align_face"]

# Canonical 5-point positions as fractions of the crop side (x, y): what RetinaFace reports
# on the synthetic benchmark's face crops, averaged and rounded, mirrored to be symmetric.
CANONICAL_LANDMARKS = np.array(
    [[0.375, 0.398], [0.625, 0.398], [0.500, 0.515], [0.394, 0.639], [0.606, 0.639]], np.float32
)


def canonical_landmarks(size: int, *, scale: float = 1.0) -> np.ndarray:
    """(5, 2) target landmark positions in a ``size`` x ``size`` crop.

    ``scale`` > 1 makes the face larger in the crop (tighter crop), < 1 looser.
    """
    return ((CANONICAL_LANDMARKS - 0.5) * scale + 0.5) * size


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src to dst.

    Umeyama's solution, which in 2-D has a closed form without an SVD: with points as complex
    numbers, centred, the map is ``z -> a z + b`` with ``a = sum(conj(s) d) / sum(|s|^2)`` (a
    rotation and a scale, never a reflection). The runtime aligns every face on every frame,
    so this runs at frame rate. Args are (N, 2) point sets, N >= 2. Returns a (2, 3) matrix
    for ``cv2.warpAffine``.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"expected two (N, 2) point sets with N >= 2, got {src.shape} and {dst.shape}")
    mean_src, mean_dst = src.mean(0), dst.mean(0)
    sx, sy = (src - mean_src).T
    dx, dy = (dst - mean_dst).T
    norm = float(sx @ sx + sy @ sy)
    if norm < 1e-12 * len(src):
        raise ValueError("landmarks are degenerate (all at one point)")
    # a = sum(conj(s) d) / sum(|s|^2) = (re + i im) / norm
    re, im = float(sx @ dx + sy @ dy) / norm, float(sx @ dy - sy @ dx) / norm
    (mx, my), (nx, ny) = mean_src, mean_dst
    return np.array([[re, -im, nx - re * mx + im * my], [im, re, ny - im * mx - re * my]], np.float32)


def align_face(
    frame: np.ndarray, landmarks: np.ndarray, size: int, *, scale: float = 1.0, border: int = cv2.BORDER_REPLICATE
) -> np.ndarray:
    """Warp the face with these (5, 2) landmarks onto a ``size`` x ``size`` canonical crop."""
    matrix = similarity_transform(landmarks, canonical_landmarks(size, scale=scale))
    return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=border)
