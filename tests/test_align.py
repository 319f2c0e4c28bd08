import numpy as np
import pytest

from edge_fer.preprocessing.align import align_face, canonical_landmarks, similarity_transform


def test_recovers_a_known_similarity():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, size=(5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ (scale * rot).T + shift
    matrix = similarity_transform(src, dst)
    assert np.allclose(matrix[:, :2], scale * rot, atol=1e-4)
    assert np.allclose(matrix[:, 2], shift, atol=1e-3)


def test_aligned_face_puts_landmarks_on_the_template():
    frame = np.zeros((200, 300, 3), np.uint8)
    landmarks = canonical_landmarks(80) * 1.5 + np.array([100.0, 40.0])
    for x, y in landmarks.astype(int):
        frame[y - 1 : y + 2, x - 1 : x + 2] = 255
    crop = align_face(frame, landmarks, 120)
    assert crop.shape == (120, 120, 3)
    for x, y in canonical_landmarks(120).round().astype(int):
        assert crop[y, x].max() > 100


def test_degenerate_landmarks_are_refused():
    with pytest.raises(ValueError, match="degenerate"):
        similarity_transform(np.ones((5, 2)), np.zeros((5, 2)) + np.arange(5)[:, None])
