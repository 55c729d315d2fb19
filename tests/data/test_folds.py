"""Question folds and the train/val split (reference semantics, validation)."""

from __future__ import annotations

import numpy as np
import pytest

from itictl.data import question_folds, train_val_split
from itictl.errors import BadInputError


def test_contiguous_folds_are_the_references_array_split():
    folds = question_folds(817, 2, seed=42, split="contiguous")
    assert [f.tolist() for f in folds] == [list(range(409)), list(range(409, 817))]


@pytest.mark.parametrize("n,k", [(817, 2), (817, 5), (10, 3), (7, 7)])
def test_random_folds_are_disjoint_covering_and_seeded(n, k):
    folds = question_folds(n, k, seed=42)
    allq = np.concatenate(folds)
    assert len(folds) == k and sorted(allq.tolist()) == list(range(n))  # covering, disjoint
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    assert all(np.all(np.diff(f) > 0) for f in folds)
    assert [f.tolist() for f in question_folds(n, k, seed=42)] == [f.tolist() for f in folds]
    if n > k:
        assert [f.tolist() for f in question_folds(n, k, seed=43)] != [f.tolist() for f in folds]
        assert [f.tolist() for f in folds] != [f.tolist() for f in question_folds(n, k, 42, "contiguous")]


@pytest.mark.parametrize("n,k,split", [(817, 1, "random"), (817, 0, "random"), (5, 6, "random"),
                                       (1, 2, "contiguous"), (10, 2, "stratified")])
def test_bad_fold_arguments(n, k, split):
    with pytest.raises(BadInputError):
        question_folds(n, k, 0, split)


def test_train_val_split_reference_semantics():
    ids = np.arange(409, 817)
    train, val = train_val_split(ids, 0.2, seed=42)
    assert len(train) == int(len(ids) * 0.8) and len(train) + len(val) == len(ids)
    assert set(train.tolist()).isdisjoint(val.tolist()) and set(train.tolist()) | set(val.tolist()) == set(ids.tolist())
    # validate_2fold.py: np.random.seed(seed) then np.random.choice(train_idxs, int(n*(1-r)), replace=False)
    np.random.seed(42)
    ref_train = np.random.choice(ids, size=int(len(ids) * 0.8), replace=False)
    ref_val = np.array([x for x in ids if x not in ref_train])
    assert train.tolist() == ref_train.tolist() and val.tolist() == ref_val.tolist()
    t2, v2 = train_val_split(ids, 0.2, seed=43)
    assert t2.tolist() != train.tolist()


@pytest.mark.parametrize("ratio", [0, 1, -0.1, 1.5, float("nan"), float("inf"), "x"])
def test_bad_val_ratio(ratio):
    with pytest.raises(BadInputError, match="val-ratio"):
        train_val_split(np.arange(100), ratio, 0)


def test_split_too_small_or_duplicated():
    train, val = train_val_split(np.arange(2), 0.2, 0)  # int(2*0.8) = 1 train, 1 val
    assert len(train) == 1 and len(val) == 1
    with pytest.raises(BadInputError, match="empty train"):
        train_val_split(np.arange(1), 0.2, 0)
    with pytest.raises(BadInputError, match="duplicates"):
        train_val_split(np.array([1, 1, 2, 3]), 0.5, 0)
