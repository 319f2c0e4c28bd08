"""Evaluation splits: disjointness, coverage, stratification, group integrity, determinism."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_fer.data.splits import Fold, kfold, loso_folds, train_val_split
from edge_fer.errors import DatasetError

labels_st = st.lists(st.integers(0, 3), min_size=6, max_size=60)
FAST = settings(max_examples=60, deadline=None)


@st.composite
def grouped(draw, min_groups: int = 2):
    """(labels, groups) with at least ``min_groups`` distinct groups."""
    labels = draw(labels_st)
    n_groups = draw(st.integers(min_groups, max(min_groups, len(labels))))
    groups = [f"s{draw(st.integers(0, n_groups - 1))}" for _ in labels]
    groups[:min_groups] = [f"s{g}" for g in range(min_groups)]  # make sure enough groups exist
    return labels, groups


def assert_partition(train: tuple[int, ...] | list[int], test: tuple[int, ...] | list[int], n: int) -> None:
    assert not set(train) & set(test)
    assert sorted([*train, *test]) == list(range(n))
    assert list(train) == sorted(train) and list(test) == sorted(test)


# --------------------------------------------------------------------------------------
# leave-one-subject-out
# --------------------------------------------------------------------------------------


def test_loso_one_fold_per_subject_in_natural_order():
    subjects = ["s10", "s2", "s1", "s2", "s10", "s10"]
    folds = loso_folds(subjects)
    assert [f.name for f in folds] == ["s1", "s2", "s10"]
    assert folds[1] == Fold(name="s2", train=(0, 2, 4, 5), test=(1, 3))
    for fold in folds:
        assert_partition(fold.train, fold.test, len(subjects))
        assert {subjects[i] for i in fold.test} == {fold.name}
    with pytest.raises(DatasetError, match="two or more subjects"):
        loso_folds(["s1", "s1"])


# --------------------------------------------------------------------------------------
# k-fold
# --------------------------------------------------------------------------------------


@FAST
@given(labels=labels_st, k=st.integers(2, 5), seed=st.integers(0, 2**16))
def test_kfold_partitions_and_stratifies(labels, k, seed):
    folds = kfold(labels, k, seed=seed)
    assert len(folds) == k
    tests = [i for f in folds for i in f.test]
    assert sorted(tests) == list(range(len(labels)))  # test sets partition the samples
    for fold in folds:
        assert_partition(fold.train, fold.test, len(labels))
    for c in set(labels):
        per_fold = [sum(labels[i] == c for i in f.test) for f in folds]
        assert max(per_fold) - min(per_fold) <= 1
    assert kfold(labels, k, seed=seed) == folds


@FAST
@given(data=grouped(min_groups=5), k=st.integers(2, 5), seed=st.integers(0, 2**16))
def test_group_kfold_keeps_groups_whole(data, k, seed):
    labels, groups = data
    folds = kfold(labels, k, seed=seed, groups=groups)
    assert sorted(i for f in folds for i in f.test) == list(range(len(labels)))
    for fold in folds:
        assert fold.test, "no fold may be empty"
        assert_partition(fold.train, fold.test, len(labels))
        assert not {groups[i] for i in fold.test} & {groups[i] for i in fold.train}
    assert kfold(labels, k, seed=seed, groups=groups) == folds


def test_group_kfold_balances_classes_over_many_subjects():
    labels = [s % 3 for s in range(30) for _ in range(4)]  # 30 subjects, each of one class
    groups = [f"sub{s}" for s in range(30) for _ in range(4)]
    folds = kfold(labels, 5, seed=0, groups=groups)
    for fold in folds:
        counts = Counter(labels[i] for i in fold.test)
        assert sorted(counts.values()) == [8, 8, 8]


def test_kfold_argument_errors():
    with pytest.raises(ValueError, match="k >= 2"):
        kfold([0, 1], 1, seed=0)
    with pytest.raises(DatasetError, match="at least 3 samples"):
        kfold([0, 1], 3, seed=0)
    with pytest.raises(DatasetError, match="at least 3 groups"):
        kfold([0, 1, 0, 1], 3, seed=0, groups=["a", "a", "b", "b"])
    with pytest.raises(DatasetError, match="one group per sample"):
        kfold([0, 1, 0], 2, seed=0, groups=["a", "b"])


# --------------------------------------------------------------------------------------
# train / validation
# --------------------------------------------------------------------------------------


@FAST
@given(labels=labels_st, fraction=st.floats(0.05, 0.5), seed=st.integers(0, 2**16))
def test_train_val_split_stratified(labels, fraction, seed):
    train, val = train_val_split(labels, val_fraction=fraction, seed=seed)
    assert_partition(train, val, len(labels))
    assert val and train
    for c, n in Counter(labels).items():
        if n >= 2:
            assert any(labels[i] == c for i in val), "every class with >= 2 samples is validated"
            assert any(labels[i] == c for i in train), "and keeps a training sample"
    assert train_val_split(labels, val_fraction=fraction, seed=seed) == (train, val)


@FAST
@given(data=grouped(), fraction=st.floats(0.05, 0.5), seed=st.integers(0, 2**16))
def test_grouped_train_val_split_keeps_groups_and_classes(data, fraction, seed):
    labels, groups = data
    train, val = train_val_split(labels, val_fraction=fraction, seed=seed, groups=groups)
    assert_partition(train, val, len(labels))
    assert val and train
    assert not {groups[i] for i in val} & {groups[i] for i in train}
    for c in set(labels):
        if len({g for g, y in zip(groups, labels) if y == c}) >= 2:
            assert any(labels[i] == c for i in train), "a class spanning groups keeps training samples"
    assert train_val_split(labels, val_fraction=fraction, seed=seed, groups=groups) == (train, val)


def test_grouped_split_validates_every_class_when_it_can():
    labels = [c for c in range(3) for _ in range(10)]
    groups = [f"sub{i % 10}" for i in range(30)]  # every subject has every class
    train, val = train_val_split(labels, val_fraction=0.2, seed=3, groups=groups)
    assert {labels[i] for i in val} == {0, 1, 2}
    assert len(val) == 6  # two whole subjects of three samples


def test_seed_changes_the_split_and_errors():
    labels = [0, 1] * 20
    assert train_val_split(labels, val_fraction=0.25, seed=0) != train_val_split(labels, val_fraction=0.25, seed=1)
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(labels, val_fraction=1.0, seed=0)
    with pytest.raises(DatasetError, match="two or more groups"):
        train_val_split([0, 1], val_fraction=0.5, seed=0, groups=["a", "a"])
