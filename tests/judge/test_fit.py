"""The probe search: on synthetic data where one layer separates the labels, it finds that layer
and a probe that classifies held-out rows almost perfectly; standardisation is part of the probe."""

import numpy as np
import pytest

from itictl.judge import fit as JF
from itictl.judge.metrics import binary_metrics


def _synthetic(n=900, layers=5, width=12, signal_layer=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, layers, width)) * 3 + 10  # offset and scale: standardisation matters
    direction = rng.normal(size=width)
    X[:, signal_layer] += np.outer(2 * y - 1, direction) * 2.0
    return X.astype(np.float32), y


def test_search_finds_the_separable_layer_and_generalises():
    X, y = _synthetic()
    idx = np.random.default_rng(1).permutation(len(y))
    train, val, test = idx[:600], idx[600:750], idx[750:]
    s = JF.search(X, y, train, val, Cs=(0.01, 1.0), screen_n=300, top=2)
    assert s.layer == 3 and s.C in (0.01, 1.0)
    assert len(s.screen) == 5 and len(s.grid) == 4
    screen = {r["layer"]: r["val_log_loss"] for r in s.screen}
    assert screen[3] < min(v for k, v in screen.items() if k != 3) / 2  # the others are at chance (~0.69)
    probe = JF.fit_final(X, y, np.concatenate([train, val]), s.layer, s.C)
    m = binary_metrics(y[test], probe.predict(X[test, probe.layer]))
    assert m["accuracy"] > 0.97 and m["auc"] > 0.99
    assert np.allclose(probe.mean, X[np.concatenate([train, val]), 3].astype(np.float64).mean(0), atol=1e-4)


def test_noise_gives_chance():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 2, 8)).astype(np.float32)
    y = rng.integers(0, 2, 600)
    probe = JF.fit_final(X, y, np.arange(400), 1, 0.01)
    m = binary_metrics(y[400:], probe.predict(X[400:, 1]))
    assert 0.35 < m["accuracy"] < 0.65


def test_constant_features_stay_finite():
    X, y = _synthetic(n=200, layers=1, signal_layer=0)
    X[:, 0, :3] = 5.0
    p = JF.fit_final(X, y, np.arange(150), 0, 0.1)
    assert np.isfinite(p.predict(X[150:, 0])).all()
    assert p.std[:3] == pytest.approx([JF.STD_FLOOR] * 3)
