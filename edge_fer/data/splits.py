"""Evaluation splits as the papers use them: leave-one-subject-out, stratified (group) k-fold,
and a stratified train/validation split taken from a training set.

Everything works on indices into the caller's record list, is deterministic for a given
seed, and uses numpy only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_fer.errors import DatasetError

__all__ = ["Fold", "loso_folds", "kfold", "train_val_split"]


@dataclass(frozen=True)
class Fold:
    """One train/test partition of a dataset, as sorted indices into its record list."""

    name: str
    train: tuple[int, ...]
    test: tuple[int, ...]


def _natural_key(text: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _check_lengths(labels: Sequence[int], groups: Sequence[str] | None) -> None:
    if groups is not None and len(groups) != len(labels):
        raise DatasetError(f"groups must give one group per sample: {len(labels)} labels, {len(groups)} groups")


def _fold(name: str, n: int, test: np.ndarray) -> Fold:
    mask = np.zeros(n, dtype=bool)
    mask[test] = True
    return Fold(name=name, train=tuple(np.flatnonzero(~mask).tolist()), test=tuple(np.flatnonzero(mask).tolist()))


def loso_folds(subjects: Sequence[str]) -> list[Fold]:
    """Leave-one-subject-out: one fold per subject, whose samples form its test set.

    Args:
        subjects: the subject of each sample (e.g. ``[r.subject for r in records]``).

    Returns:
        Folds named after their subject, in natural subject order (s2 before s10).

    Raises:
        DatasetError: fewer than two distinct subjects.
    """
    names = sorted(set(subjects), key=_natural_key)
    if len(names) < 2:
        raise DatasetError(f"leave-one-subject-out needs two or more subjects, found {len(names)}")
    array = np.asarray(subjects, dtype=object)
    return [_fold(name, len(array), np.flatnonzero(array == name)) for name in names]


# --------------------------------------------------------------------------------------
# k-fold
# --------------------------------------------------------------------------------------


def _stratified_assignment(labels: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold of each sample: each class shuffled, classes laid end to end, dealt round-robin.

    Every class is spread over the folds with counts differing by at most one, and so
    are the fold sizes.
    """
    order = np.concatenate([rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)])
    folds = np.empty(len(labels), dtype=int)
    folds[order] = np.arange(len(order)) % k
    return folds


def _group_histogram(labels: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(group index of each sample, (G, C) class counts per group)."""
    names, group_of = np.unique(groups, return_inverse=True)
    classes, label_of = np.unique(labels, return_inverse=True)
    counts = np.zeros((len(names), len(classes)))  # (G, C)
    np.add.at(counts, (group_of, label_of), 1)
    return group_of, counts


def _placement_cost(per_fold: np.ndarray, f: int, group: np.ndarray, totals: np.ndarray) -> tuple[float, float]:
    """(unevenness of per-class shares across folds, fold size) if ``group`` joins fold ``f``."""
    trial = per_fold.copy()
    trial[f] += group
    return float(np.mean(np.std(trial / totals, axis=0))), float(trial[f].sum())


def _group_assignment(labels: np.ndarray, groups: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold of each sample, keeping each group whole and class proportions even (greedy).

    Groups are taken largest first (ties in seeded random order); each goes to the fold
    where it leaves the per-class shares most even, ties to the smaller fold.
    """
    group_of, counts = _group_histogram(labels, groups)  # counts: (G, C)
    shuffled = rng.permutation(len(counts))
    order = shuffled[np.argsort(-counts[shuffled].sum(axis=1), kind="stable")]
    totals = counts.sum(axis=0)
    per_fold = np.zeros((k, counts.shape[1]))  # (k, C) class counts per fold
    fold_of_group = np.empty(len(counts), dtype=int)
    for placed, g in enumerate(order):
        empty = [f for f in range(k) if per_fold[f].sum() == 0]
        options = empty if len(empty) >= len(order) - placed else range(k)  # never leave a fold empty
        best = min(options, key=lambda f: _placement_cost(per_fold, f, counts[g], totals))
        fold_of_group[g] = best
        per_fold[best] += counts[g]
    return fold_of_group[group_of]


def kfold(labels: Sequence[int], k: int, *, seed: int, groups: Sequence[str] | None = None) -> list[Fold]:
    """Stratified k-fold cross-validation, group-aware when ``groups`` is given.

    Without groups each class is split as evenly as possible (per-fold counts of a class
    differ by at most one). With groups no group (e.g. subject) is split across folds and
    class proportions are balanced greedily.

    Args:
        labels: the class of each sample.
        k: number of folds, at least 2.
        seed: seed of the shuffling; the same seed gives the same folds.
        groups: optional group of each sample.

    Returns:
        ``k`` folds named "fold1".."foldk"; their test sets partition the samples.

    Raises:
        ValueError: ``k`` < 2.
        DatasetError: fewer samples (or groups) than folds, or groups of the wrong length.
    """
    if k < 2:
        raise ValueError(f"k-fold needs k >= 2, got {k}")
    _check_lengths(labels, groups)
    array = np.asarray(labels)
    unit = "groups" if groups is not None else "samples"
    units = len(set(groups)) if groups is not None else len(array)
    if units < k:
        raise DatasetError(f"{k}-fold split needs at least {k} {unit}, found {units}")
    rng = np.random.default_rng(seed)
    if groups is None:
        assignment = _stratified_assignment(array, k, rng)
    else:
        assignment = _group_assignment(array, np.asarray(groups, dtype=object).astype(str), k, rng)
    return [_fold(f"fold{f + 1}", len(array), np.flatnonzero(assignment == f)) for f in range(k)]


# --------------------------------------------------------------------------------------
# train / validation
# --------------------------------------------------------------------------------------


def _class_val_count(n: int, val_fraction: float) -> int:
    """Validation samples of a class of ``n``: rounded share, at least 1 and at most n-1 (0 if n < 2)."""
    return 0 if n < 2 else min(max(int(np.floor(n * val_fraction + 0.5)), 1), n - 1)


def _stratified_val(labels: np.ndarray, val_fraction: float, rng: np.random.Generator) -> np.ndarray:
    picks = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        picks.append(members[: _class_val_count(len(members), val_fraction)])
    val = np.concatenate(picks)
    if val.size == 0:  # only singleton classes: take one sample anyway
        val = rng.permutation(len(labels))[:1]
    return val


class _GroupPicker:
    """Moves whole groups to validation without taking the last training sample of a
    class that spans two or more groups."""

    def __init__(self, counts: np.ndarray) -> None:
        self.counts = counts  # (G, C)
        self.spread = (counts > 0).sum(axis=0)  # (C,) groups holding each class
        self.train = counts.sum(axis=0)  # (C,) class counts left in training
        self.chosen: list[int] = []

    def can_move(self, g: int) -> bool:
        left = self.train - self.counts[g]
        return g not in self.chosen and bool(np.all((left > 0) | (self.counts[g] == 0) | (self.spread < 2)))

    def take(self, g: int) -> None:
        self.chosen.append(g)
        self.train -= self.counts[g]

    def size(self) -> float:
        return float(self.counts[self.chosen].sum())


def _grouped_val(labels: np.ndarray, groups: np.ndarray, val_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Whole groups for validation: first one per class (rarest class first), then more
    groups in seeded order until the validation share is reached."""
    group_of, counts = _group_histogram(labels, groups)
    picker = _GroupPicker(counts)
    order = rng.permutation(len(counts))
    for c in np.argsort(counts.sum(axis=0), kind="stable"):
        if picker.spread[c] < 2 or counts[picker.chosen, c].sum() > 0:
            continue
        candidates = [g for g in order if counts[g, c] > 0 and picker.can_move(g)]
        if candidates:
            picker.take(min(candidates, key=lambda g: counts[g].sum()))
    target = np.floor(len(labels) * val_fraction + 0.5)
    for g in order:
        if (picker.chosen and picker.size() >= target) or len(picker.chosen) == len(counts) - 1:
            break
        if picker.can_move(g):
            picker.take(g)
    return np.flatnonzero(np.isin(group_of, picker.chosen))


def train_val_split(
    labels: Sequence[int], *, val_fraction: float, seed: int, groups: Sequence[str] | None = None
) -> tuple[list[int], list[int]]:
    """Split a training set into train and validation indices, stratified by class.

    Without groups every class with two or more samples gets at least one validation
    sample and keeps at least one training sample; a class's validation share is its size
    times ``val_fraction``, rounded. With groups whole groups move to validation: first
    one group per class (rarest first) wherever the class spans two or more groups and
    keeps a training sample, then further groups until about ``val_fraction`` of the
    samples are in validation. Deterministic for a given seed.

    Args:
        labels: the class of each sample.
        val_fraction: share of samples for validation, in (0, 1).
        seed: seed of the shuffling.
        groups: optional group (e.g. subject) of each sample.

    Returns:
        (train indices, validation indices), each sorted, disjoint, together all samples.

    Raises:
        ValueError: ``val_fraction`` outside (0, 1).
        DatasetError: fewer than two samples (or groups), or groups of the wrong length.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    _check_lengths(labels, groups)
    array = np.asarray(labels)
    unit = "groups" if groups is not None else "samples"
    units = len(set(groups)) if groups is not None else len(array)
    if units < 2:
        raise DatasetError(f"a train/validation split needs two or more {unit}, found {units}")
    rng = np.random.default_rng(seed)
    if groups is None:
        val = _stratified_val(array, val_fraction, rng)
    else:
        val = _grouped_val(array, np.asarray(groups, dtype=object).astype(str), val_fraction, rng)
    fold = _fold("val", len(array), val)
    return list(fold.train), list(fold.test)
