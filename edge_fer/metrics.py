"""Classification metrics of the DFER and micro-expression literature (numpy only).

- WAR (weighted average recall) = accuracy over all samples.
- UAR (unweighted average recall) = mean of per-class recalls.
- UF1 (unweighted F1) = mean of per-class F1 scores.

For leave-one-subject-out protocols, pool the predictions of all folds first, then compute
(as the MEGC2019 protocol does). A class absent from both targets and predictions is left
out of the means; a class with targets but no correct prediction counts as 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["confusion_matrix", "classification_report"]


def confusion_matrix(targets: Sequence[int], predictions: Sequence[int], num_classes: int) -> np.ndarray:
    """(K, K) counts, rows = true class, columns = predicted class."""
    targets = np.asarray(targets, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    if targets.shape != predictions.shape:
        raise ValueError(f"targets {targets.shape} and predictions {predictions.shape} differ in shape")
    if targets.size and (
        min(targets.min(), predictions.min()) < 0 or max(targets.max(), predictions.max()) >= num_classes
    ):
        raise ValueError(f"labels must be in 0..{num_classes - 1}")
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (targets, predictions), 1)
    return matrix


def classification_report(targets: Sequence[int], predictions: Sequence[int], classes: Sequence[str]) -> dict:
    """WAR, UAR, UF1, per-class recall/F1 and the confusion matrix, JSON-ready."""
    matrix = confusion_matrix(targets, predictions, len(classes))
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    hits = np.diag(matrix)
    present = (support + predicted) > 0
    recall = np.divide(hits, support, out=np.zeros(len(classes)), where=support > 0)
    f1 = np.divide(2 * hits, support + predicted, out=np.zeros(len(classes)), where=(support + predicted) > 0)
    total = int(matrix.sum())
    with_targets = support > 0
    return {
        "war": float(hits.sum() / total) if total else 0.0,
        "uar": float(recall[with_targets].mean()) if with_targets.any() else 0.0,
        "uf1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class_recall": {c: float(r) for c, r, s in zip(classes, recall, support) if s > 0},
        "per_class_f1": {c: float(v) for c, v, p in zip(classes, f1, present) if p},
        "support": {c: int(s) for c, s in zip(classes, support)},
        "confusion_matrix": matrix.tolist(),
        "classes": list(classes),
        "samples": total,
    }
