"""The engine-comparison bounds of tests/parity.py measure what they claim and can fail."""

import numpy as np
import pytest
import torch
from parity import assert_within_units, classifier_unit


def test_unit_is_one_int8_step_on_every_classifier_input():
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    with torch.no_grad():
        features = model[1](model[0](torch.from_numpy(x)))
    step = features.abs().max().item() / 127
    expected = step * model[2].weight.abs().sum(1).detach().numpy()
    np.testing.assert_allclose(classifier_unit(model, x), expected, rtol=1e-6)


def test_bound_is_enforced_logit_by_logit():
    unit = np.full(3, 0.1, np.float32)
    expected = np.array([[3.0, 1.0, 0.0], [1.0, 1.05, 0.0]], np.float32)
    assert_within_units(expected + 0.05, expected, unit, units=1, what="within")
    with pytest.raises(AssertionError, match="differ by 2.00 units"):
        assert_within_units(expected + [0.2, 0, 0], expected, unit, units=1, what="too far")
