"""Judge metrics: Cohen's κ on a known example, AUC against a brute-force pair count, balanced accuracy."""

import itertools

import numpy as np
import pytest

from itictl.judge.metrics import agreement, auc, binary_metrics


def _scores(confusion: dict[str, int]) -> tuple[list[float], list[float]]:
    a, b = [], []
    for key, n in confusion.items():
        va, vb = key.split("_")
        a += [0.9 if va == "yes" else 0.1] * n
        b += [0.7 if vb == "yes" else 0.3] * n
    return a, b


def test_kappa_on_a_known_example():
    # the classic two-rater example: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> p_o 0.7, p_e 0.5, κ 0.4
    conf = {"yes_yes": 20, "yes_no": 5, "no_yes": 10, "no_no": 15}
    r = agreement(*_scores(conf))
    assert r["confusion"] == conf and r["n"] == 50
    assert r["agreement"] == pytest.approx(0.7) and r["kappa"] == pytest.approx(0.4)
    assert r["yes_rate_a"] == pytest.approx(0.5) and r["yes_rate_b"] == pytest.approx(0.6)


def test_kappa_limits():
    a = [0.9, 0.1, 0.8, 0.2]
    assert agreement(a, a)["kappa"] == pytest.approx(1.0)
    assert agreement(a, [1 - x for x in a])["kappa"] == pytest.approx(-1.0)
    assert agreement([0.5, 0.5], [0.9, 0.6])["kappa"] is None  # both say yes throughout: undefined
    assert agreement([0.49], [0.5])["confusion"] == {"yes_yes": 0, "yes_no": 0, "no_yes": 1, "no_no": 0}


def test_auc_matches_pair_counting():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.round(rng.random(200), 1)  # many ties
    pos, neg = p[y == 1], p[y == 0]
    want = sum((a > b) + 0.5 * (a == b) for a, b in itertools.product(pos, neg)) / (len(pos) * len(neg))
    assert auc(y, p) == pytest.approx(want)
    assert auc([1, 1], [0.2, 0.3]) is None


def test_binary_metrics():
    m = binary_metrics([1, 1, 1, 0], [0.9, 0.6, 0.2, 0.7])
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["auc"] == pytest.approx(1 / 3) and m["n"] == 4  # 0.9 > 0.7 only and m["positive_rate"] == 0.75
    assert binary_metrics([1, 1], [0.9, 0.1])["balanced_accuracy"] is None
