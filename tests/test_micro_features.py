"""Micro-expression pre-processing on the synthetic CASME II set, with the real detector."""

import numpy as np
import pytest

from edge_fer.data.micro import read_casme2
from edge_fer.data.micro_features import MicroFeatureConfig, compute_micro_features
from edge_fer.data.synth import write_micro
from edge_fer.runtime.detection import open_face_detector


class CountingDetector:
    """The real detector, counting how often it is asked (to see the cache work)."""

    def __init__(self):
        self.inner = open_face_detector()
        self.calls = 0

    def detect(self, frame):
        self.calls += 1
        return self.inner.detect(frame)


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    return write_micro(tmp_path_factory.mktemp("me"), subjects=2, clips_per_subject=6, seed=3, workers=2)


def test_features_are_computed_once_then_cached(micro, tmp_path):
    records = read_casme2(micro)
    detector = CountingDetector()
    first = compute_micro_features(records, cache_dir=tmp_path, detector=detector)
    assert first.images.shape == (len(records), 28, 28, 3) and first.images.dtype == np.uint8
    assert detector.calls >= len(records)
    assert first.face_found.all()
    assert first.apex_spotted.tolist() == [r.apex is None for r in records]
    calls = detector.calls
    again = compute_micro_features(records, cache_dir=tmp_path, detector=detector)
    assert detector.calls == calls  # all from the cache
    assert np.array_equal(again.images, first.images) and np.array_equal(again.apex, first.apex)
    other = compute_micro_features(
        records[:2], cache_dir=tmp_path, detector=detector, config=MicroFeatureConfig(convention="official")
    )
    assert detector.calls > calls  # different settings, different cache entries
    assert not np.array_equal(other.images, first.images[:2])


def test_spotted_apex_is_near_the_true_one(micro, tmp_path):
    import dataclasses

    records = [r for r in read_casme2(micro) if r.apex is not None]
    hidden = [dataclasses.replace(r, apex=None) for r in records]
    spotted = compute_micro_features(hidden, cache_dir=tmp_path).apex
    errors = np.abs(spotted - np.array([r.apex for r in records]))
    assert np.median(errors) <= 6  # frames at 200 fps: within 30 ms
