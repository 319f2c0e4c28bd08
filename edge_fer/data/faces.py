"""The real face photos the synthetic benchmark draws on, and what is known about them.

SYNTHETIC DATA's raw material: the 100 faces of scikit-image's LFW subset (25x25 grey crops of
many different people). Both synthetic styles use them - the "motion" benchmark
(``edge_fer.data.synth``) and the action-unit renderer (``edge_fer.data.expressions``) - so
they live here, below both.
"""

from __future__ import annotations

import functools

import numpy as np

from edge_fer.errors import DatasetError

__all__ = ["FACE_CENTRE_X", "LFW_FACES", "RESTING_FACES", "SMILING_FACES", "load_faces"]

FACE_CENTRE_X = 0.43  # the crops' eye midpoint (a fraction of the width): a little left of centre

LFW_FACES = 100  # the first 100 images of lfw_subset are faces, the rest are not
# LFW photos in which the person already smiles: the FER2013 teacher (edge_fer.data.realism)
# gives them P(happy) >= 0.3 as 96-px crops (tests/test_realism.py re-derives the list). The
# "au" style draws its other emotions on the remaining faces: a sad or a neutral face
# painted over a smile reads as happy, to the teacher and to a model.
SMILING_FACES = (1, 10, 11, 13, 18, 19, 21, 23, 27, 31, 34, 36, 37, 38, 43, 45, 47, 50, 52, 53,
                 56, 59, 61, 63, 64, 68, 69, 70, 74, 75, 78, 79, 81, 85, 86, 91, 93, 94, 96)  # fmt: skip
# Of the others, the faces at rest: the teacher reads their clean neutral render (the renderer's
# framing, every nuisance off) as neutral; it reads 20 of the other 32 as angry, so an "angry"
# clip drawn there would read angry for the photo's sake (tests/test_realism.py re-derives the
# list). The "au" style draws every emotion but happy on these: the meter 42.4 % against 39.8 %,
# zero-shot CK+ level (nine paired runs, 0.667 against 0.681) and never below 0.643 where the
# calm faces gave 0.621 (docs/training.md).
RESTING_FACES = (2, 7, 8, 12, 14, 15, 17, 20, 24, 25, 26, 32, 41, 42, 46, 49, 54, 55, 60, 62, 66, 67,
                 72, 76, 80, 92, 95, 98, 99)  # fmt: skip


@functools.lru_cache(maxsize=1)
def load_faces() -> np.ndarray:
    """The real face photos shipped with scikit-image: (100, 25, 25) float in [0, 1]."""
    try:
        from skimage.data import lfw_subset
    except ImportError:
        raise DatasetError(
            "the synthetic benchmark needs scikit-image for its face photos: pip install scikit-image"
        ) from None
    return lfw_subset()[:LFW_FACES]
