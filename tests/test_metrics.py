import numpy as np
import pytest

from edge_fer.metrics import classification_report, confusion_matrix


def test_known_values():
    targets = [0, 0, 0, 0, 1, 1, 2, 2]
    predictions = [0, 0, 0, 1, 1, 0, 2, 1]
    report = classification_report(targets, predictions, ["a", "b", "c"])
    assert report["war"] == pytest.approx(5 / 8)
    assert report["uar"] == pytest.approx((3 / 4 + 1 / 2 + 1 / 2) / 3)
    f1 = [2 * 3 / (4 + 4), 2 * 1 / (2 + 3), 2 * 1 / (2 + 1)]
    assert report["uf1"] == pytest.approx(np.mean(f1))
    assert report["confusion_matrix"] == [[3, 1, 0], [1, 1, 0], [0, 1, 1]]


def test_constant_classifier_has_chance_uar_but_high_war_on_imbalanced_data():
    targets = [0] * 90 + [1] * 5 + [2] * 5
    report = classification_report(targets, [0] * 100, ["a", "b", "c"])
    assert report["war"] == pytest.approx(0.9)
    assert report["uar"] == pytest.approx(1 / 3)


def test_out_of_range_labels_are_refused():
    with pytest.raises(ValueError, match="0..1"):
        confusion_matrix([0, 2], [0, 1], 2)
