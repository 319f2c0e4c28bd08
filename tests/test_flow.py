import cv2
import numpy as np
import pytest

from edge_fer.preprocessing.flow import flow_image, micro_image, optical_flow, optical_strain, spot_apex


def test_strain_of_a_uniform_stretch():
    h, w = 20, 30
    xx = np.tile(np.arange(w, dtype=np.float32), (h, 1))
    flow = np.dstack([0.1 * xx, np.zeros_like(xx)])  # u = 0.1 x: pure stretch along x
    assert np.allclose(optical_strain(flow), 0.1, atol=1e-6)
    rigid = np.dstack([np.full_like(xx, 3.0), np.full_like(xx, -2.0)])  # translation has no strain
    assert np.allclose(optical_strain(rigid), 0.0)


def test_flow_image_is_28x28_and_min_max_normalised():
    rng = np.random.default_rng(0)
    image = flow_image(rng.normal(size=(112, 112, 2)).astype(np.float32))
    assert image.shape == (28, 28, 3) and image.dtype == np.uint8
    for c in range(3):
        assert image[..., c].min() == 0 and image[..., c].max() == 255


def textured(size=112, seed=0):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur((rng.random((size, size)) * 255).astype(np.uint8), (7, 7), 2)


@pytest.mark.parametrize("method", ["farneback", "dis"])
def test_flow_measures_a_known_shift(method):
    base = textured()
    moved = np.roll(base, 2, axis=1)  # content moves 2 px to the right
    flow = optical_flow(base, moved, method)
    centre = flow[30:80, 30:80]
    assert np.median(centre[..., 0]) == pytest.approx(2.0, abs=0.3)
    assert abs(np.median(centre[..., 1])) < 0.3


def test_micro_image_is_htnet_input():
    base = cv2.cvtColor(textured(160), cv2.COLOR_GRAY2BGR)
    apex = base.copy()
    apex[100:130, 60:100] = np.roll(base[100:130, 60:100], 2, axis=0)  # a local motion
    landmarks = np.array([[66, 70], [94, 70], [80, 82], [68, 95], [92, 95]], np.float32)
    image = micro_image(base, apex, landmarks)
    assert image.shape == (28, 28, 3) and image.dtype == np.uint8


def test_spot_apex_finds_the_frame_that_moved_most():
    base = textured()
    offsets = [0, 0, 1, 2, 4, 2, 1, 0]
    frames = [np.roll(base, k, axis=0) for k in offsets]
    assert spot_apex(frames) == 4
