"""Optical flow features for micro-expressions (numpy + OpenCV; used by training and runtime).

From an onset and an apex frame of one face: align both with the *same* similarity warp
(from the onset's landmarks, so the expression's motion survives alignment), compute dense
optical flow, derive optical strain, shrink to 28x28, min-max normalise each channel to
0..255 - the STSTNet/HTNet input - and cut the four eye/mouth patches
(``edge_fer.preprocessing.micro_input``).

Flow method: Farneback (as the official HTNet pre-processing) or DIS (OpenCV's fast dense
flow); TV-L1, used by STSTNet, lives in opencv-contrib only, which we do not require.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from edge_fer.preprocessing.align import canonical_landmarks, similarity_transform
from edge_fer.preprocessing.micro_input import GRID, Convention, four_patch_image

__all__ = [
    "optical_flow",
    "optical_strain",
    "flow_image",
    "aligned_pair",
    "micro_image",
    "motion_profile",
    "spot_apex",
    "FlowMethod",
]

FlowMethod = Literal["farneback", "dis"]
ALIGN_SIZE = 112  # side of the aligned face crop the flow is computed on


def optical_flow(prev_gray: np.ndarray, next_gray: np.ndarray, method: FlowMethod = "farneback") -> np.ndarray:
    """Dense flow (H, W, 2) float32 from ``prev_gray`` to ``next_gray`` (uint8 grey images)."""
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(prev_gray, next_gray, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return dis.calc(prev_gray, next_gray, None)
    raise ValueError(f"unknown flow method {method!r}; use 'farneback' or 'dis'")


def optical_strain(flow: np.ndarray) -> np.ndarray:
    """Magnitude of the infinitesimal strain tensor of a flow field, (H, W) float32.

    e = 1/2 (grad u + grad u^T); strain = sqrt(e_xx^2 + e_yy^2 + 2 e_xy^2).
    """
    du_dy, du_dx = np.gradient(flow[..., 0])
    dv_dy, dv_dx = np.gradient(flow[..., 1])
    shear = 0.5 * (du_dy + dv_dx)
    return np.sqrt(du_dx**2 + dv_dy**2 + 2 * shear**2).astype(np.float32)


def _minmax_u8(channel: np.ndarray) -> np.ndarray:
    low, high = float(channel.min()), float(channel.max())
    if high - low < 1e-12:
        return np.zeros(channel.shape, np.uint8)
    return np.round((channel - low) / (high - low) * 255).astype(np.uint8)


def flow_image(flow: np.ndarray, *, size: int = GRID) -> np.ndarray:
    """(size, size, 3) uint8 image of (u, v, optical strain), each min-max normalised to 0..255."""
    strain = optical_strain(flow)
    stacked = np.dstack([flow[..., 0], flow[..., 1], strain])
    small = cv2.resize(stacked, (size, size), interpolation=cv2.INTER_AREA)
    return np.dstack([_minmax_u8(small[..., c]) for c in range(3)])


def aligned_pair(
    onset_bgr: np.ndarray, apex_bgr: np.ndarray, landmarks: np.ndarray, *, size: int = ALIGN_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Onset and apex faces, grey, warped with the one transform of the onset's landmarks."""
    matrix = similarity_transform(landmarks, canonical_landmarks(size))
    faces = []
    for frame in (onset_bgr, apex_bgr):
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        faces.append(
            cv2.warpAffine(gray, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        )
    return faces[0], faces[1]


def micro_image(
    onset_bgr: np.ndarray,
    apex_bgr: np.ndarray,
    landmarks: np.ndarray,
    *,
    method: FlowMethod = "farneback",
    convention: Convention = "xy",
) -> np.ndarray:
    """HTNet's input image (28, 28, 3) uint8 from a face's onset and apex frames.

    Args:
        onset_bgr, apex_bgr: the two frames (BGR or grey), same size.
        landmarks: (5, 2) landmarks of the face in the onset frame.
        method: optical flow method.
        convention: patch crop convention ("official" for official checkpoints, "xy" otherwise).
    """
    onset, apex = aligned_pair(onset_bgr, apex_bgr, landmarks)
    image = flow_image(optical_flow(onset, apex, method))
    # After alignment the landmarks sit at the canonical positions.
    return four_patch_image(image, canonical_landmarks(GRID), convention=convention)


def motion_profile(frames_gray: list[np.ndarray] | np.ndarray, reference: int = 0) -> np.ndarray:
    """Mean absolute difference of each (aligned, grey) frame from the reference frame.

    A cheap motion signal for spotting: zero at the reference, largest where the face has
    moved most. Frames are blurred first so sensor noise does not count as motion.
    """
    blurred = [cv2.GaussianBlur(f, (5, 5), 1.5).astype(np.float32) for f in frames_gray]
    base = blurred[reference]
    return np.array([np.abs(f - base).mean() for f in blurred], np.float32)


def spot_apex(frames_gray: list[np.ndarray] | np.ndarray, onset_index: int = 0, offset_index: int | None = None) -> int:
    """Index of the apex: the frame between onset and offset that moved most from the onset.

    The face is back to neutral at the offset, so whatever difference remains there is
    drift (head motion, lighting); it is removed as a linear trend from onset to offset
    before taking the maximum.
    """
    end = len(frames_gray) if offset_index is None else offset_index + 1
    profile = motion_profile(frames_gray[onset_index:end])
    profile = profile - profile[-1] * np.linspace(0.0, 1.0, len(profile))
    smooth = np.convolve(profile, np.ones(3) / 3, mode="same")
    return onset_index + int(np.argmax(smooth))
