"""Fitting a probe judge: standardised logistic probes per layer, the layer and C chosen on held-out answers.

Owns `search` (screen every layer at one C on a subset of the training answers, keep the `top`
layers with the lowest validation log-loss, then fit each kept layer at every C on all training
answers and keep the (layer, C) with the lowest validation log-loss) and `fit_final` (refit the
chosen probe on train + validation). Features are standardised with the training answers' mean
and std per layer (std floored, so constant features stay finite). The solver is
probe/solver.py's batched Newton trainer (sklearn's L2 objective; the intercept unpenalised).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from itictl.judge.metrics import log_loss

DEFAULT_CS = (0.0001, 0.001, 0.01, 0.1, 1.0)
SCREEN_C = 0.01
SCREEN_N = 4000   # training answers used to screen every layer
TOP_LAYERS = 3
LAYER_CHUNK = 8   # layers per batched solve while screening (bounds memory: chunk x n x width x 8 bytes)
STD_FLOOR = 1e-6


@dataclass
class Probe:
    """A standardised linear probe on one layer: P(yes) = sigmoid(((x - mean) / std) · weight + bias)."""

    layer: int
    C: float
    weight: np.ndarray  # [width]
    bias: float
    mean: np.ndarray    # [width]
    std: np.ndarray     # [width]

    def predict(self, X_nW: np.ndarray) -> np.ndarray:
        z = ((np.asarray(X_nW, dtype=np.float64) - self.mean) / self.std) @ self.weight + self.bias
        return 0.5 * (1.0 + np.tanh(0.5 * z))  # sigmoid without overflow

    def stored(self) -> Probe:
        """The probe as its float32 payload holds it (metrics are computed on exactly this)."""
        def f32(a):
            return np.asarray(a, dtype=np.float32).astype(np.float64)

        return Probe(self.layer, self.C, f32(self.weight), float(np.float32(self.bias)), f32(self.mean), f32(self.std))


@dataclass
class Search:
    layer: int
    C: float
    screen: list[dict[str, Any]] = field(default_factory=list)  # per layer: {layer, val_log_loss}
    grid: list[dict[str, Any]] = field(default_factory=list)    # per (layer, C): {layer, C, val_log_loss}


def standardiser(X_nW: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(X_nW, dtype=np.float64)
    return x.mean(0), np.maximum(x.std(0), STD_FLOOR)


def _fit_layers(X: np.ndarray, y: np.ndarray, layers: Sequence[int], tr: np.ndarray, C: float, device) -> list[Probe]:
    """One probe per layer in `layers`, fitted on rows `tr` of X [N, layers_total, W] (one batched solve)."""
    from itictl.probe.solver import fit_logreg_batched

    stats = [standardiser(X[tr, l]) for l in layers]
    Z = np.stack([(np.asarray(X[tr, l], dtype=np.float64) - m) / s for l, (m, s) in zip(layers, stats)])  # [P, n, W]
    w, b, _ = fit_logreg_batched(Z, y[tr], C=C, device=device)
    return [Probe(int(l), float(C), w[i].numpy(), float(b[i]), m, s) for i, (l, (m, s)) in enumerate(zip(layers, stats))]


def search(X: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, *, Cs: Sequence[float] = DEFAULT_CS,
           screen_c: float = SCREEN_C, screen_n: int = SCREEN_N, top: int = TOP_LAYERS, seed: int = 0,
           device=None, progress: Callable[[int], None] | None = None) -> Search:
    """Choose (layer, C) by validation log-loss. X: [N, n_layers, W]; train/val: row indices."""
    n_layers = X.shape[1]
    rng = np.random.default_rng(seed)
    sub = np.sort(rng.permutation(train)[:screen_n]) if len(train) > screen_n else train
    res = Search(layer=0, C=float(Cs[0]))
    for lo in range(0, n_layers, LAYER_CHUNK):
        chunk = list(range(lo, min(n_layers, lo + LAYER_CHUNK)))
        for p in _fit_layers(X, y, chunk, sub, screen_c, device):
            res.screen.append({"layer": p.layer, "val_log_loss": log_loss(y[val], p.predict(X[val, p.layer]))})
        if progress:
            progress(len(chunk))
    kept = [r["layer"] for r in sorted(res.screen, key=lambda r: (r["val_log_loss"], r["layer"]))[:top]]
    for C in Cs:
        for p in _fit_layers(X, y, kept, train, float(C), device):
            res.grid.append({"layer": p.layer, "C": float(C), "val_log_loss": log_loss(y[val], p.predict(X[val, p.layer]))})
        if progress:
            progress(len(kept))
    best = min(res.grid, key=lambda r: (r["val_log_loss"], r["layer"], r["C"]))
    res.layer, res.C = best["layer"], best["C"]
    return res


def fit_final(X: np.ndarray, y: np.ndarray, rows: np.ndarray, layer: int, C: float, device=None) -> Probe:
    """The chosen probe refitted on `rows` (train + validation)."""
    return _fit_layers(X, y, [layer], rows, C, device)[0].stored()
