import numpy as np
import pytest

from edge_fer.preprocessing.micro_input import (
    OFFICIAL_FALLBACK_LANDMARKS_28,
    four_patch_image,
    landmarks_to_grid,
    patch_centres,
)


def coordinate_image():
    """28x28x3 image whose channel 0 holds the row index and channel 1 the column index."""
    rows, cols = np.mgrid[0:28, 0:28]
    return np.stack([rows, cols, rows * 28 + cols], axis=-1).astype(np.uint8)


LANDMARKS = np.array([[9.0, 11.0], [19.0, 10.5], [14.0, 16.0], [10.2, 20.9], [18.9, 21.0]])


def patch_origin(tile):
    """(row, col) of the source pixel at a tile's top-left corner."""
    return int(tile[0, 0, 0]), int(tile[0, 0, 1])


@pytest.mark.parametrize("convention", ["official", "xy"])
def test_tiles_come_from_the_right_places(convention):
    out = four_patch_image(coordinate_image(), LANDMARKS, convention=convention)
    assert out.shape == (28, 28, 3) and out.dtype == np.uint8
    centres = patch_centres(LANDMARKS)
    tiles = {0: out[:14, :14], 1: out[:14, 14:], 3: out[14:, :14], 4: out[14:, 14:]}
    for index, tile in tiles.items():
        x, y = centres[index]
        row, col = (x, y) if convention == "official" else (y, x)  # official: x picks the row
        assert patch_origin(tile) == (row - 7, col - 7)


def test_nose_is_dropped():
    moved = LANDMARKS.copy()
    moved[2] = [7.0, 7.0]
    img = coordinate_image()
    assert np.array_equal(four_patch_image(img, LANDMARKS), four_patch_image(img, moved))


def test_centres_are_clipped_to_7_21_and_truncated():
    centres = patch_centres(np.array([[0.0, 30.0], [20.9, 7.6], [14.0, 14.0], [-5.0, 21.0], [100.0, 3.0]]))
    assert centres.tolist() == [[7, 21], [20, 7], [14, 14], [7, 21], [21, 7]]
    out = four_patch_image(coordinate_image(), np.array([[0.0, 0.0]] * 5))  # still 14x14 patches inside
    assert out.shape == (28, 28, 3)


def test_landmarks_scale_to_the_grid():
    on_face = np.array([[56.0, 112.0]] * 5)
    assert landmarks_to_grid(on_face, (224, 112)).tolist() == [[14.0, 14.0]] * 5
    assert OFFICIAL_FALLBACK_LANDMARKS_28.shape == (5, 2)


@pytest.mark.parametrize("bad", [np.zeros((28, 28)), np.zeros((27, 28, 3))])
def test_bad_image_shape(bad):
    with pytest.raises(ValueError, match="expected a"):
        four_patch_image(bad, LANDMARKS)


def test_bad_landmarks():
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        patch_centres(np.zeros((68, 2)))
    with pytest.raises(ValueError, match="NaN"):
        patch_centres(np.full((5, 2), np.nan))
