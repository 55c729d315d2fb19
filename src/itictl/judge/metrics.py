"""Scores of a judge against labels, and of two judges against each other.

Owns: accuracy, balanced accuracy and ROC AUC of P(yes) against 0/1 labels (`binary_metrics`), the
mean log-loss used to choose a probe's layer and C, and `agreement` (raw agreement, Cohen's κ and
the 2×2 confusion counts of two judges' yes/no verdicts). Verdict: P(yes) ≥ THRESHOLD (0.5), as
TruthfulQA's judges and evaluate/runner.py count them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

THRESHOLD = 0.5


def auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """ROC AUC (Mann–Whitney U with average ranks for ties); None with one class only."""
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p), dtype=np.float64)
    sp = p[order]
    i = 0
    while i < len(sp):  # average ranks over ties
        j = i
        while j + 1 < len(sp) and sp[j + 1] == sp[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(y: np.ndarray, p: np.ndarray, eps: float = 1e-12) -> float:
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    y = np.asarray(y, dtype=np.float64)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def binary_metrics(y: Sequence[int], p: Sequence[float]) -> dict[str, Any]:
    """{n, accuracy, balanced_accuracy, auc, log_loss, positive_rate} of P(yes) against labels."""
    y_a = np.asarray(y, dtype=np.int64)
    p_a = np.asarray(p, dtype=np.float64)
    if len(y_a) == 0:
        return {"n": 0, "accuracy": None, "balanced_accuracy": None, "auc": None, "log_loss": None,
                "positive_rate": None}
    pred = p_a >= THRESHOLD
    pos, neg = y_a == 1, y_a == 0
    rates = [float(pred[pos].mean())] if pos.any() else []
    rates += [float((~pred[neg]).mean())] if neg.any() else []
    return {"n": len(y_a), "accuracy": float((pred == pos).mean()),
            "balanced_accuracy": float(np.mean(rates)) if len(rates) == 2 else None,
            "auc": auc(y_a, p_a), "log_loss": log_loss(y_a, p_a), "positive_rate": float(pos.mean())}


def agreement(p_a: Sequence[float], p_b: Sequence[float]) -> dict[str, Any]:
    """Agreement of two judges' verdicts: {n, agreement, kappa, confusion {yes_yes, yes_no, no_yes,
    no_no} (A's verdict first), yes_rate_a, yes_rate_b}. κ = (p_o − p_e) / (1 − p_e); None when
    p_e = 1 (both judges give one and the same verdict throughout: κ is undefined)."""
    a = np.asarray(p_a, dtype=np.float64) >= THRESHOLD
    b = np.asarray(p_b, dtype=np.float64) >= THRESHOLD
    if a.shape != b.shape:
        raise ValueError(f"{a.shape[0]} vs {b.shape[0]} scores")
    n = int(a.size)
    conf = {"yes_yes": int((a & b).sum()), "yes_no": int((a & ~b).sum()), "no_yes": int((~a & b).sum()),
            "no_no": int((~a & ~b).sum())}
    if n == 0:
        return {"n": 0, "agreement": None, "kappa": None, "confusion": conf, "yes_rate_a": None, "yes_rate_b": None}
    po = (conf["yes_yes"] + conf["no_no"]) / n
    ra, rb = float(a.mean()), float(b.mean())
    pe = ra * rb + (1 - ra) * (1 - rb)
    kappa = None if pe >= 1.0 else (po - pe) / (1 - pe)
    return {"n": n, "agreement": po, "kappa": kappa, "confusion": conf, "yes_rate_a": ra, "yes_rate_b": rb}
