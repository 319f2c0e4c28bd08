"""HTNet input preparation (numpy only, shared by the data pipeline and the edge runtime).

HTNet does not see the whole face: from a 28x28 optical-flow image (channels u, v,
optical strain, each 0..255) it takes a 14x14 patch around each eye and each mouth
corner and tiles them 2x2 into a new 28x28 image; the nose is dropped::

    +-----------+-----------+
    | landmark0 | landmark1 |     landmarks in the 5-point order of MTCNN/RetinaFace:
    +-----------+-----------+     0 eye (image left), 1 eye (image right), 2 nose,
    | landmark3 | landmark4 |     3 mouth corner (image left), 4 mouth corner (image right)
    +-----------+-----------+

Landmark centres are clipped to [7, 21] (so a patch never leaves the image) and truncated
to integers, as the official code does.

Coordinate conventions:
    "official": the official code indexes ``image[x-7:x+7, y-7:y+7]`` with (x, y) landmark
        coordinates, i.e. x selects the *row*: patches are taken at the transposed
        position. Models trained with the official code (and their checkpoints) expect this.
    "xy": the geometrically correct crop ``image[y-7:y+7, x-7:x+7]``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = [
    "OFFICIAL_FALLBACK_LANDMARKS_28",
    "landmarks_to_grid",
    "patch_centres",
    "four_patch_image",
]

PATCH = 14
HALF = PATCH // 2
GRID = 28
TILE_ORDER = ((0, 1), (3, 4))  # rows of the 2x2 tiling, as landmark indices

# Landmarks the official code substitutes on a 28x28 face when MTCNN finds none
# ((x, y) per point, 5-point order).
OFFICIAL_FALLBACK_LANDMARKS_28 = np.array(
    [
        [9.528073, 11.062551],
        [21.396168, 10.919773],
        [15.380184, 17.380562],
        [10.255435, 22.121233],
        [20.583706, 22.25584],
    ],
    dtype=np.float32,
)

Convention = Literal["official", "xy"]


def landmarks_to_grid(landmarks: np.ndarray, image_size: tuple[int, int], grid: int = GRID) -> np.ndarray:
    """Scale (5, 2) landmarks from a face image of (height, width) to the grid x grid image."""
    landmarks = np.asarray(landmarks, dtype=np.float32)
    height, width = image_size
    return landmarks * np.array([grid / width, grid / height], dtype=np.float32)


def patch_centres(landmarks: np.ndarray) -> np.ndarray:
    """(5, 2) float (x, y) landmarks on the 28x28 grid -> (5, 2) int centres in [7, 21]."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (5, 2):
        raise ValueError(f"expected 5 landmarks of shape (5, 2), got {landmarks.shape}")
    if not np.all(np.isfinite(landmarks)):
        raise ValueError("landmarks contain NaN or Inf")
    return np.clip(landmarks, HALF, GRID - HALF).astype(np.int64)  # truncation, as the official code


def four_patch_image(
    flow_image: np.ndarray, landmarks: np.ndarray, *, convention: Convention = "official"
) -> np.ndarray:
    """Tile the four eye/mouth patches of a 28x28 flow image into HTNet's input image.

    Args:
        flow_image: (28, 28, C) array (C = 3: u, v, strain, each 0..255), any dtype.
        landmarks: (5, 2) (x, y) landmark coordinates on the 28x28 grid.
        convention: "official" (transposed crop, matches official checkpoints) or "xy".

    Returns:
        (28, 28, C) array of the same dtype: top row patches of landmarks 0 and 1, bottom
        row patches of landmarks 3 and 4.
    """
    flow_image = np.asarray(flow_image)
    if flow_image.ndim != 3 or flow_image.shape[:2] != (GRID, GRID):
        raise ValueError(f"expected a ({GRID}, {GRID}, C) flow image, got shape {flow_image.shape}")
    if convention not in ("official", "xy"):
        raise ValueError(f"convention must be 'official' or 'xy', got {convention!r}")
    centres = patch_centres(landmarks)

    def crop(index: int) -> np.ndarray:
        x, y = centres[index]
        row, col = (x, y) if convention == "official" else (y, x)
        return flow_image[row - HALF : row + HALF, col - HALF : col + HALF]

    return np.concatenate([np.concatenate([crop(a), crop(b)], axis=1) for a, b in TILE_ORDER], axis=0)
