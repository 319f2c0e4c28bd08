import numpy as np
import pytest

from edge_fer.preprocessing.clips import eval_transform, normalise, sample_indices, train_transform
from edge_fer.presets import get_preset


@pytest.mark.parametrize("num_frames", [16, 17, 40, 123])
def test_centred_sampling_is_8_pairs_in_order(num_frames):
    idx = sample_indices(num_frames, train=False)
    assert idx.shape == (16,)
    assert (np.diff(idx) >= 0).all() and idx.min() >= 0 and idx.max() < num_frames
    pairs = idx.reshape(8, 2)
    assert (pairs[:, 1] - pairs[:, 0] == 1).all()  # two consecutive frames per segment
    assert np.array_equal(idx, sample_indices(num_frames, train=False))  # deterministic


def test_training_offsets_vary_but_stay_in_their_segment():
    rng = np.random.default_rng(0)
    draws = np.stack([sample_indices(80, train=True, rng=rng) for _ in range(200)])
    starts = draws[:, ::2]
    segment = (80 - 1) // 8
    for k in range(8):
        assert starts[:, k].min() >= k * segment and starts[:, k].max() < (k + 1) * segment
    assert len({tuple(d) for d in draws}) > 100


def test_short_video_is_padded_by_repetition_in_order():
    idx = sample_indices(5, train=True, rng=np.random.default_rng(0))
    assert idx.tolist() == sorted(idx.tolist()) and set(idx.tolist()) == set(range(5)) and len(idx) == 16


def test_transforms_apply_one_crop_and_flip_to_the_whole_clip():
    pre = get_preset("stt_tiny").preprocessing
    gradient = np.tile(np.arange(100, dtype=np.uint8)[None, :, None], (100, 1, 3))
    frames = [gradient.copy() for _ in range(16)]
    clip = train_transform(frames, pre, np.random.default_rng(3))
    assert clip.shape == (16, 3, 64, 64) and clip.dtype == np.float32
    assert all(np.array_equal(clip[0], clip[t]) for t in range(16))  # same crop and flip for all frames
    test = eval_transform(frames, pre)
    assert test.shape == (16, 3, 64, 64)
    assert test[0, 0, 0, 0] < test[0, 0, 0, -1]  # no flip at test time


def test_normalise_is_rgb_and_uses_the_preset():
    pre = get_preset("stt_base").preprocessing
    pixel = np.zeros((1, 1, 1, 3), np.uint8)
    pixel[..., 2] = 255  # red in BGR
    out = normalise(pixel, pre)
    assert out.shape == (1, 3, 1, 1)
    assert out[0, 0, 0, 0] == pytest.approx((1 - pre.mean[0]) / pre.std[0], rel=1e-6)
    assert out[0, 1, 0, 0] == pytest.approx(-pre.mean[1] / pre.std[1], rel=1e-6)
